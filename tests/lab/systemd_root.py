"""A Debian 12 root booted with a real systemd as PID 1, in namespaces of its own.

    from lab.systemd_root import SystemdContainer, Unavailable, ensure_root

    root = ensure_root()                         # cached; debootstrap the first time
    with SystemdContainer(root, tmp_path) as box:  # boots; powers off and cleans up on exit
        box.run("systemctl", "start", "firewalld")
        box.journal("-u", "calfwd", "CALFWD_EVENT=reconciled")

The root (ensure_root)
  `debootstrap --variant=minbase` of bookworm with PACKAGES, from the host's own Debian mirror
  (CALFWD_DEBIAN_MIRROR overrides it). Cached under CALFWD_TEST_ROOTS (default
  /var/cache/calfwd-tests) as `debian-bookworm-<key>.tar.gz`, the key being a hash of the
  suite, the package list and RECIPE; next to it the unpacked copy that containers use
  read-only as their overlay's lower layer. Missing unpacked copy: extracted from the tarball
  (about 15 s). Missing tarball: built (about 2 minutes), under a lock, atomically (a
  half-built root is never used). Roots of other keys are left alone (delete them by hand). Both debootstrap stages run in throw-away namespaces: the first
  (download and unpack, no maintainer scripts) in its own mount and pid namespaces; the
  second (maintainer scripts) additionally in a network namespace of its own, so nothing
  a package's postinst starts can reach the host's network or outlive the build.

The container (SystemdContainer)
  `unshare --cgroup --pid --fork --mount --uts --ipc --net --propagation private --kill-child`
  runs BOOT, which assembles the root and pivots into it, then execs systemd as PID 1 of
  the new pid namespace. It differs from the plain recipe in ../shared/FIELD-NOTES.md
  (section 6: chroot, rbind of /sys and /dev) on purpose:
  - overlay: the cached root stays pristine; each container writes to its own upper layer.
  - pivot_root instead of chroot: systemd sees only the container's mounts (with chroot,
    its mount table would list every host mount, and shutdown would try to unmount them).
  - a fresh read-only sysfs instead of rbind /sys: no host sub-mounts (securityfs, debugfs,
    bpf), and /sys/class/net shows the container's network namespace, not the host's.
    Read-only sysfs also makes udev's units skip themselves (ConditionPathIsReadWrite=/sys).
  - /dev is a tmpfs with null, zero, full, random, urandom and tty bound in and a private
    devpts: no host block devices, nothing for udev, fsck or fstrim to act on.
  - /proc/sys read-only except /proc/sys/net (which belongs to the container's own network
    namespace); /proc/sysrq-trigger read-only.
  - cgroups: the launcher moves itself into a fresh child cgroup of its own (one per
    hierarchy) before unsharing the cgroup namespace, so the container's systemd manages that
    subtree only; it is removed after poweroff. This is the only host-side write besides
    the cache and the work directory.
  - capabilities: the bounding set drops what systemd-nspawn drops by default for the
    host-global ones (DROPPED_CAPS: kernel modules, clock, raw I/O, audit, syslog, ...).
  - units that act on host-global kernel state or on host devices are masked (MASKED).
  - DefaultLimitCORE=0: core_pattern is global, a crash inside must not invoke the host's
    core handler.
  `systemctl poweroff` ends the container, never the host: reboot(2) from a child pid
  namespace only kills that namespace's init (with SIGINT for a poweroff: POWERED_OFF).
  The launcher has PR_SET_PDEATHSIG and unshare --kill-child: if the test process dies, the
  whole container dies with it, and its mounts with its mount namespace; only its (empty)
  cgroups stay, and the next container removes them once they are an hour old.

Every boot of a container has the host kernel's boot id, and the journal (persistent, in
the upper layer) keeps the earlier boots: `journalctl -b` means all of them. Select by
cursor (cursor(), journal_after()) or by _SYSTEMD_INVOCATION_ID instead.

Commands run inside with nsenter on namespace file descriptors opened once at boot (never
/proc/<pid>, which a reused pid could turn into a host process): the container's mount
namespace (its root is the container's root, so /run/dbus is the container's bus), network,
pid, uts, ipc and cgroup namespaces, with a clean environment.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .netns import SYSTEM_PATH, unique_id
from .wait import wait_until

SUITE = "bookworm"
PACKAGES = (
    "systemd", "systemd-sysv", "libpam-systemd", "dbus", "netbase", "procps",
    "firewalld", "nftables", "iptables", "iproute2",
    "python3", "python3-nftables", "python3-dbus", "python3-gi", "python3-systemd",
    "rpm",  # to install calfwd's RPM itself, scriptlets and all
)
RECIPE = 1  # bump when the build steps below change what ends up in the root
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CACHE = Path(os.environ.get("CALFWD_TEST_ROOTS", "/var/cache/calfwd-tests"))
TOOLS = ("debootstrap", "unshare", "nsenter", "mount", "umount", "pivot_root", "tar", "chroot")

# Units masked in every container, and why. The read-only /sys, /proc/sys and the dropped
# capabilities already stop most of them; the masks make that explicit and keep the boot
# "running" rather than "degraded".
MASKED = (
    # udev would trigger uevents on the host's devices and create device nodes.
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service",
    # Host-global kernel state: modules, non-network sysctls, binfmt_misc, pstore (deletes
    # the host's crash records), the kernel's debug/trace/config file systems, audit.
    "systemd-modules-load.service", "kmod-static-nodes.service", "systemd-sysctl.service",
    "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount", "proc-sys-fs-binfmt_misc.mount",
    "systemd-pstore.service", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
    "sys-kernel-config.mount", "sys-fs-fuse-connections.mount", "systemd-journald-audit.socket",
    # Block-device maintenance meant for the host's disks.
    "fstrim.timer", "fstrim.service", "e2scrub_all.timer", "e2scrub_reap.service",
    # No consoles in the container.
    "getty.target", "console-getty.service",
    # Periodic jobs that would only add noise (apt has no network in there anyway).
    "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
)
# Host-global capabilities removed from the container's bounding set (what systemd-nspawn
# leaves out of its default set, keeping CAP_SYS_BOOT for the pid-namespaced reboot(2)).
DROPPED_CAPS = ("sys_module", "sys_rawio", "sys_time", "sys_pacct", "syslog", "wake_alarm",
                "block_suspend", "audit_control", "audit_read", "mac_admin", "mac_override")
CONTAINER_ENV = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "SYSTEMD_PAGER": "cat",
                 "SYSTEMD_COLORS": "0", "TERM": "dumb"}
NAMESPACES = ("mnt", "net", "pid", "uts", "ipc", "cgroup")
NSENTER_OPTION = {"mnt": "--mount", "net": "--net", "pid": "--pid", "uts": "--uts",
                  "ipc": "--ipc", "cgroup": "--cgroup"}


POWERED_OFF = -signal.SIGINT  # see SystemdContainer.poweroff()


class Unavailable(Exception):
    """The environment cannot run a container (not root, a tool or the mirror missing)."""


class RootBuildError(Exception):
    """debootstrap or the cache failed for a reason other than the environment."""


def is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def prerequisites() -> Optional[str]:
    """Why no container can run here (before any network access), or None."""
    if os.geteuid() != 0:
        return "needs root (namespaces, mounts, cgroups)"
    missing = [t for t in TOOLS if not shutil.which(t, path=SYSTEM_PATH)]
    if missing:
        return "needs " + ", ".join(missing) + " (tests/install-deps.sh installs them)"
    if not Path("/proc/self/ns/cgroup").exists():
        return "needs cgroup namespaces"
    return None


# -- the cached root -------------------------------------------------------------------------

def key() -> str:
    text = json.dumps([SUITE, RECIPE, sorted(PACKAGES)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def host_mirror() -> str:
    """The Debian mirror the host's apt uses for SUITE (CALFWD_DEBIAN_MIRROR wins)."""
    if os.environ.get("CALFWD_DEBIAN_MIRROR"):
        return os.environ["CALFWD_DEBIAN_MIRROR"].rstrip("/")
    sources = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*"))
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":  # deb822: URIs and Suites per paragraph
            for para in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", para, re.M))
                if SUITE in fields.get("Suites", "").split():
                    for uri in fields.get("URIs", "").split():
                        if uri.rstrip("/").endswith("/debian"):
                            return uri.rstrip("/")
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE \
                        and words[1].rstrip("/").endswith("/debian"):
                    return words[1].rstrip("/")
    return DEFAULT_MIRROR


def mirror_problem(mirror: str, timeout: float = 15.0) -> Optional[str]:
    url = "%s/dists/%s/InRelease" % (mirror, SUITE)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except Exception as exc:  # any failure means: cannot build from here
        return "Debian mirror not reachable (%s: %s)" % (url, exc)


def ensure_root(cache: Path = CACHE, log: Callable[[str], None] = lambda _m: None) -> Path:
    """The unpacked root for this key: as cached, extracted from the cached tarball, or built.

    Raises Unavailable when it has to be built and cannot be (no debootstrap, no mirror),
    RootBuildError when a build or an extraction fails otherwise.
    """
    k = key()
    unpacked = cache / ("debian-%s-%s" % (SUITE, k))
    tarball = cache / ("debian-%s-%s.tar.gz" % (SUITE, k))
    marker = unpacked / ".calfwd-systemd-root"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / (".lock-" + k), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder per key; others wait, then reuse
        if marker.exists():
            if not tarball.exists():  # the archive went missing: make it again from the root
                _archive(unpacked, tarball)
            return unpacked
        staging = cache / ("debian-%s-%s.staging" % (SUITE, k))
        _remove_tree(staging)
        _remove_tree(unpacked)  # no marker: an interrupted extraction or a foreign leftover
        if tarball.exists():
            started = time.monotonic()
            staging.mkdir()
            _check(["tar", "--extract", "--gzip", "--file", str(tarball), "--numeric-owner",
                    "--same-permissions", "--xattrs", "--xattrs-include=*", "-C", str(staging)],
                   "extracting %s" % tarball, timeout=600)
            if not (staging / ".calfwd-systemd-root").exists():
                _remove_tree(staging)
                tarball.unlink()
                raise RootBuildError("%s has no marker: removed it, run again to rebuild" % tarball)
            staging.rename(unpacked)
            log("extracted %s in %.0f s" % (tarball, time.monotonic() - started))
            return unpacked
        _build(staging, log)
        _archive(staging, tarball)
        staging.rename(unpacked)
        return unpacked


def _archive(root: Path, tarball: Path) -> None:
    tmp = tarball.with_name(tarball.name + ".tmp")
    _check(["tar", "--create", "--gzip", "--file", str(tmp), "--numeric-owner", "--xattrs",
            "--xattrs-include=*", "-C", str(root), "."], "archiving the root", timeout=900)
    tmp.rename(tarball)


def _build(staging: Path, log: Callable[[str], None]) -> None:
    if not shutil.which("debootstrap", path=SYSTEM_PATH):
        raise Unavailable("no cached systemd root and no debootstrap to build one "
                          "(tests/install-deps.sh installs it)")
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    if not keyring.exists():
        raise Unavailable("no %s to verify the Debian mirror with" % keyring)
    mirror = host_mirror()
    problem = mirror_problem(mirror)
    if problem:
        raise Unavailable(problem)
    started = time.monotonic()
    build_log = staging.with_name(staging.name + ".log")
    with open(build_log, "w") as out:
        # Stage 1: download and unpack; no maintainer script runs.
        first = subprocess.run(
            ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "--kill-child",
             "debootstrap", "--foreign", "--variant=minbase", "--keyring=%s" % keyring,
             "--include=" + ",".join(PACKAGES), SUITE, str(staging), mirror],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=1800,
            env=_host_env())
        if first.returncode != 0:
            tail = _tail(build_log)
            _remove_tree(staging)
            if "Failed getting release file" in tail or "Couldn't download" in tail \
                    or "Could not resolve" in tail or "unable to resolve" in tail:
                raise Unavailable("debootstrap could not download from %s:\n%s" % (mirror, tail))
            raise RootBuildError("debootstrap --foreign failed:\n" + tail)
        # Stage 2: configure (maintainer scripts) with no network and in a throw-away pid
        # namespace: nothing a postinst starts can reach the host or survive the build.
        second = subprocess.run(
            ["unshare", "--mount", "--pid", "--fork", "--net", "--uts", "--ipc",
             "--propagation", "private", "--kill-child",
             "chroot", str(staging), "/debootstrap/debootstrap", "--second-stage"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=1800,
            env=_host_env())
        if second.returncode != 0:
            tail = _tail(build_log)
            _remove_tree(staging)
            raise RootBuildError("debootstrap --second-stage failed:\n" + tail)
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*"):
        for path in staging.glob(pattern):
            path.unlink()
    (staging / ".calfwd-systemd-root").write_text(json.dumps({
        "suite": SUITE, "recipe": RECIPE, "packages": sorted(PACKAGES), "mirror": mirror,
        "build_seconds": round(time.monotonic() - started)}) + "\n")
    build_log.unlink()
    log("built the %s root in %.0f s" % (SUITE, time.monotonic() - started))


def _host_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")}
    env.update(PATH=SYSTEM_PATH, LANG="C.UTF-8", DEBIAN_FRONTEND="noninteractive")
    return env


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _check(argv: List[str], what: str, timeout: float) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=_host_env())
    if proc.returncode != 0:
        raise RootBuildError("%s failed (exit %d): %s" % (what, proc.returncode, proc.stderr[-2000:]))


def _remove_tree(path: Path) -> None:
    """rm -rf that refuses to cross into anything mounted below (there should be nothing)."""
    if not path.exists() and not path.is_symlink():
        return
    if _mounts_under(path):
        raise RootBuildError("%s has mounts below it; not removing it" % path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _mounts_under(path: Path) -> List[str]:
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def _unescape(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


# -- the container -----------------------------------------------------------------------------

# Runs as PID 1 of the new pid namespace, in new mount, uts, ipc, network and cgroup
# namespaces. argv: lower (the cached root), work dir, cgroup layout (v1|v2), caps to drop.
BOOT = r'''
set -eu
lower=$1; work=$2; layout=$3; drop=$4
# A Kubernetes node forwards (its sysctl.d says so; systemd-sysctl is masked in here). The
# write lands in the new network namespace: /proc/sys/net follows the writer's namespace.
echo 1 > /proc/sys/net/ipv4/ip_forward
echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
r=$work/merged
mount -n -t overlay overlay -o "lowerdir=$lower,upperdir=$work/upper,workdir=$work/overlay-work" "$r"

mount -n -t proc -o nosuid,nodev,noexec proc "$r/proc"
mount -n --bind "$r/proc/sys" "$r/proc/sys"
mount -n --bind "$r/proc/sys/net" "$r/proc/sys/net"          # this network namespace's own
mount -n -o remount,bind,ro,nosuid,nodev,noexec "$r/proc/sys"  # the rest is host-global
if [ -e "$r/proc/sysrq-trigger" ]; then
    mount -n --bind "$r/proc/sysrq-trigger" "$r/proc/sysrq-trigger"
    mount -n -o remount,bind,ro "$r/proc/sysrq-trigger"
fi

mount -n -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
if [ "$layout" = v2 ]; then
    mount -n -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r/sys/fs/cgroup"
else
    mount -n -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup "$r/sys/fs/cgroup"
    mkdir "$r/sys/fs/cgroup/systemd"
    mount -n -t cgroup -o none,name=systemd,nosuid,nodev,noexec cgroup "$r/sys/fs/cgroup/systemd"
    if [ -e /sys/fs/cgroup/unified/cgroup.controllers ]; then
        mkdir "$r/sys/fs/cgroup/unified"
        mount -n -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r/sys/fs/cgroup/unified"
    fi
    mount -n -o remount,ro,nosuid,nodev,noexec "$r/sys/fs/cgroup"
fi

mount -n -t tmpfs -o mode=755,nosuid,size=4m dev "$r/dev"
for d in null zero full random urandom tty; do
    touch "$r/dev/$d"; mount -n --bind "/dev/$d" "$r/dev/$d"
done
mkdir -m 755 "$r/dev/pts"; mkdir -m 1777 "$r/dev/shm"
mount -n -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts "$r/dev/pts"
mount -n -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
ln -s pts/ptmx "$r/dev/ptmx"; ln -s /proc/self/fd "$r/dev/fd"
ln -s /proc/self/fd/0 "$r/dev/stdin"; ln -s /proc/self/fd/1 "$r/dev/stdout"
ln -s /proc/self/fd/2 "$r/dev/stderr"
mount -n -t tmpfs -o mode=755,nosuid,nodev run "$r/run"
mount -n -t tmpfs -o mode=1777,nosuid,nodev tmp "$r/tmp"

cd "$r"
pivot_root . .
umount -n -l .   # the host's tree, now stacked over the container's root: gone
cd /
exec /usr/bin/env -i container=calfwd-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /usr/bin/setpriv --bounding-set="$drop" /lib/systemd/systemd --system --show-status=no \
    --log-color=no
'''

# Moves itself into fresh cgroups (one per hierarchy) and unshares: the container's systemd
# sees those cgroups as its root and manages nothing outside them.
LAUNCH = r'''
set -eu
for dir in $CGROUPS; do
    mkdir "$dir"; echo $$ > "$dir/cgroup.procs"
done
exec unshare --cgroup --pid --fork --mount --uts --ipc --net --propagation private \
    --kill-child /bin/sh -c "$BOOT" boot "$@"
'''

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _cgroup_layout() -> Tuple[str, List[Path]]:
    """'v2', or 'v1' (legacy or hybrid: name=systemd, plus unified if mounted)."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return "v2", [base]
    if not (base / "systemd" / "cgroup.procs").exists():
        raise Unavailable("no name=systemd cgroup hierarchy to give the container")
    hierarchies = [base / "systemd"]
    if (base / "unified" / "cgroup.controllers").exists():
        hierarchies.append(base / "unified")
    return "v1", hierarchies


def _own_cgroup(hierarchy: Path) -> str:
    wanted = "name=systemd" if hierarchy.name == "systemd" else ""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _num, controllers, path = line.split(":", 2)
        if controllers == wanted:
            return path
    return "/"


CGROUP_PREFIX = "calfwd-systemd-"
STALE_CGROUP_AGE = 3600.0  # seconds


def sweep_stale_cgroups(hierarchies: Sequence[Path]) -> List[Path]:
    """Remove the cgroups of containers whose test process died without cleaning up.

    Only trees older than STALE_CGROUP_AGE with no process left anywhere in them: a running
    container always has its PID 1 in there, and a starting one is younger.
    """
    removed = []
    for hierarchy in hierarchies:
        parent = hierarchy / _own_cgroup(hierarchy).lstrip("/")
        for top in parent.glob(CGROUP_PREFIX + "*"):
            try:
                if time.time() - top.stat().st_ctime < STALE_CGROUP_AGE:
                    continue
                dirs = [top] + [p for p in top.rglob("*") if p.is_dir()]
                if any((d / "cgroup.procs").read_text().strip() for d in dirs):
                    continue
                for directory in sorted(dirs, key=lambda p: -len(p.parts)):
                    directory.rmdir()
                removed.append(top)
            except OSError:
                continue
    return removed


class SystemdContainer:
    """systemd as PID 1 on an overlay of `root`; writes only below `work` (and a cgroup)."""

    def __init__(self, root: Path, work: Path, hostname: str = "calfwd-systemd-test",
                 masked: Sequence[str] = MASKED) -> None:
        self.root = Path(root)
        self.work = Path(work)
        self.hostname = hostname
        self.masked = tuple(masked)
        self.layout, hierarchies = _cgroup_layout()
        sweep_stale_cgroups(hierarchies)
        self.name = CGROUP_PREFIX + unique_id()
        self.cgroups = [h / _own_cgroup(h).lstrip("/") / self.name for h in hierarchies]
        self.proc: Optional[subprocess.Popen] = None
        self.pid = 0  # systemd's pid as the host sees it
        self.ns_fds: Dict[str, int] = {}
        self.ns_ids: Dict[str, int] = {}
        self.boots = 0
        self.exit_status: Optional[int] = None
        self._log = None
        for sub in ("upper", "overlay-work", "merged"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        self._prepare_upper()

    # -- lifecycle ------------------------------------------------------------------------

    def _prepare_upper(self) -> None:
        """Container-only configuration, written into the overlay's upper layer."""
        upper = self.work / "upper"
        units = upper / "etc/systemd/system"
        units.mkdir(parents=True, exist_ok=True)
        for unit in self.masked:
            link = units / unit
            if not link.is_symlink():
                link.symlink_to("/dev/null")
        manager = upper / "etc/systemd/system.conf.d"
        manager.mkdir(parents=True, exist_ok=True)
        (manager / "calfwd-test.conf").write_text(
            "# calfwd tests: the kernel's core_pattern is the host's.\n"
            "[Manager]\nDefaultLimitCORE=0\n")
        journald = upper / "etc/systemd/journald.conf.d"
        journald.mkdir(parents=True, exist_ok=True)
        (journald / "calfwd-test.conf").write_text(
            "# calfwd tests: no console and no /dev/kmsg in the container.\n"
            "[Journal]\nForwardToConsole=no\nForwardToWall=no\nReadKMsg=no\n")
        (upper / "etc/hostname").write_text(self.hostname + "\n")

    def boot(self, timeout: float = 180.0) -> "SystemdContainer":
        """Start the container and wait until systemd says the boot is done."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._close_fds()
        self.boots += 1
        self.exit_status = None
        self._log = open(self.work / ("boot-%d.log" % self.boots), "w")
        env = dict(PATH=SYSTEM_PATH, BOOT=BOOT, CGROUPS=" ".join(str(c) for c in self.cgroups))
        self.proc = subprocess.Popen(
            ["/bin/sh", "-c", LAUNCH, "launch", str(self.root), str(self.work), self.layout,
             ",".join("-" + c for c in DROPPED_CAPS)],
            env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent)
        try:
            self._find_systemd(timeout=60)
            # Until systemd has set up its private socket, systemctl cannot connect at all.
            wait_until(lambda: self.run("test", "-S", "/run/systemd/private", check=False)
                       .returncode == 0, 60, "systemd's private socket", interval=0.1)
            state = self.run("systemctl", "is-system-running", "--wait", check=False,
                             timeout=timeout).stdout.strip()
            if state not in ("running", "degraded"):
                raise RuntimeError("container boot ended in state %r:\n%s" % (state, self.diagnose()))
        except BaseException:
            self.close()
            raise
        return self

    def _find_systemd(self, timeout: float) -> None:
        assert self.proc is not None
        own = {ns: os.stat("/proc/self/ns/%s" % ns).st_ino for ns in NAMESPACES}
        children = Path("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid))
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("the container exited (%s) before systemd started:\n%s"
                                   % (self.proc.returncode, self.log_text()))
            if time.monotonic() > deadline:
                raise RuntimeError("systemd did not start in the container:\n" + self.log_text())
            try:
                pids = children.read_text().split()
                exe = os.readlink("/proc/%s/exe" % pids[0]) if pids else ""
            except OSError:
                exe = ""
            if exe.endswith("/systemd"):
                pid = int(pids[0])
                fds = {ns: os.open("/proc/%d/ns/%s" % (pid, ns), os.O_RDONLY | os.O_CLOEXEC)
                       for ns in NAMESPACES}
                ids = {ns: os.fstat(fd).st_ino for ns, fd in fds.items()}
                # Still our child's systemd (unshare has not reaped it), in namespaces that
                # are not ours: only then may commands be sent there.
                still = os.readlink("/proc/%d/exe" % pid).endswith("/systemd") and \
                    str(pid) in children.read_text().split()
                if not still or any(ids[ns] == own[ns] for ns in NAMESPACES):
                    for fd in fds.values():
                        os.close(fd)
                    raise RuntimeError("container namespaces not as expected: %r vs %r" % (ids, own))
                self.pid, self.ns_fds, self.ns_ids = pid, fds, ids
                return
            time.sleep(0.05)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def poweroff(self, timeout: float = 90.0) -> int:
        """`systemctl poweroff` inside; returns the launcher's exit status once it is gone.

        POWERED_OFF when systemd shut down all the way: systemd-shutdown's
        reboot(RB_POWER_OFF) in a child pid namespace makes the kernel kill that namespace's
        init with SIGINT (reboot_pid_ns(); a reboot would be SIGHUP), and unshare re-raises
        the signal its child died of.
        """
        assert self.proc is not None
        if self.proc.poll() is None:
            self.run("systemctl", "poweroff", "--no-block", check=False, timeout=30)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill()
                raise RuntimeError("the container did not power off within %.0f s" % timeout)
        self.exit_status = self.proc.returncode
        self._after_exit()
        return self.exit_status

    def close(self) -> None:
        """Power off (or kill) if running; release everything. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.poweroff(timeout=60)
            except Exception:
                self._kill()
        self._after_exit()

    def _kill(self) -> None:
        # unshare --kill-child: SIGKILL to unshare takes the container's PID 1 (and with it
        # every process of the pid namespace) along.
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def _after_exit(self) -> None:
        if self.proc is not None and self.proc.poll() is not None and self.exit_status is None:
            self.exit_status = self.proc.returncode
        self._wait_namespace_empty(timeout=30)
        self._close_fds()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._remove_cgroups()

    def _close_fds(self) -> None:
        for fd in self.ns_fds.values():
            os.close(fd)
        self.ns_fds = {}

    def _wait_namespace_empty(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.processes_left() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _remove_cgroups(self) -> None:
        for cgroup in self.cgroups:
            for _attempt in range(100):
                if not cgroup.exists():
                    break
                dirs = sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
                try:
                    for directory in dirs + [cgroup]:
                        directory.rmdir()
                except OSError:
                    time.sleep(0.1)

    def __enter__(self) -> "SystemdContainer":
        return self.boot()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what is left behind ---------------------------------------------------------------

    def processes_left(self) -> List[int]:
        """Host pids of processes still in the container's pid namespace."""
        if "pid" not in self.ns_ids:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat("/proc/%s/ns/pid" % entry).st_ino == self.ns_ids["pid"]:
                        found.append(int(entry))
                except OSError:
                    pass
        return found

    def leftovers(self) -> List[str]:
        """Everything of this container still visible on the host (empty once it is gone)."""
        problems = ["process %d still in the container's pid namespace" % p
                    for p in self.processes_left()]
        for path in (self.work, self.root):
            problems += ["host mount at %s" % m for m in _mounts_under(path)]
        problems += ["cgroup %s still exists" % c for c in self.cgroups if c.exists()]
        return problems

    # -- inside ----------------------------------------------------------------------------

    def run(self, *args: str, check: bool = True, timeout: float = 60.0,
            input: Optional[Union[str, bytes]] = None,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        """Run a command inside (its namespaces, its root, a clean environment); text output."""
        if not self.ns_fds:
            raise RuntimeError("the container is not running")
        fds = [self.ns_fds[ns] for ns in NAMESPACES]
        argv = ["nsenter", *("%s=/proc/self/fd/%d" % (NSENTER_OPTION[ns], self.ns_fds[ns])
                             for ns in NAMESPACES),
                "--", "/usr/bin/env", "-i",
                *("%s=%s" % kv for kv in dict(CONTAINER_ENV, **(env or {})).items()), *args]
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, input=data,
                              pass_fds=fds, env={"PATH": SYSTEM_PATH})
        out = subprocess.CompletedProcess(list(args), proc.returncode,
                                          proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            raise AssertionError("in the container: %s: exit %d\n%s%s" % (
                " ".join(args), proc.returncode, out.stdout, out.stderr))
        return out

    def write(self, path: str, data: Union[str, bytes], mode: str = "0644") -> None:
        """Create or replace a file inside, root-owned, with `mode`."""
        self.run("/bin/sh", "-c", 'umask 077; cat > "$1.new" && chmod "$2" "$1.new" && '
                 'mv -f "$1.new" "$1"', "sh", path, mode, input=data)

    def show(self, unit: str, *props: str) -> Dict[str, str]:
        out = self.run("systemctl", "show", unit, *("-p" + p for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str) -> List[Dict[str, object]]:
        out = self.run("journalctl", "--no-pager", "-o", "json", *args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def cursor(self) -> str:
        """The journal's position now, for journal_after()."""
        last = self.journal("-n", "1")
        return str(last[-1]["__CURSOR"]) if last else ""

    def journal_after(self, cursor: str, unit: Optional[str] = None) -> List[Dict[str, object]]:
        """Entries after `cursor` (all when empty), of `unit` only if given (as `-u` selects:
        the unit's own processes, and systemd's messages about it).

        Filtered here: journalctl 252 drops the first matching entry when --after-cursor is
        combined with a match such as -u and the cursor's own entry does not match
        (systemd issue #30288, fixed in v255).
        """
        entries = self.journal(*(["--after-cursor=" + cursor] if cursor else []))
        if unit is None:
            return entries
        return [e for e in entries if unit in (e.get("_SYSTEMD_UNIT"), e.get("UNIT"),
                                                e.get("OBJECT_SYSTEMD_UNIT"))]

    def log_text(self) -> str:
        texts = []
        for n in range(1, self.boots + 1):
            try:
                texts.append((self.work / ("boot-%d.log" % n)).read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(texts)[-6000:]

    def diagnose(self) -> str:
        """Failed units and the end of the journal, for assertion messages."""
        if not self.ns_fds or not self.running():
            return self.log_text()
        parts = []
        for args in (("systemctl", "--failed", "--no-pager", "--no-legend"),
                     ("systemctl", "list-jobs", "--no-pager"),
                     ("journalctl", "--no-pager", "-n", "60")):
            try:
                parts.append(self.run(*args, check=False, timeout=20).stdout)
            except Exception as exc:
                parts.append("%s: %s" % (" ".join(args), exc))
        return "\n".join(parts)


