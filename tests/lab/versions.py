"""Which firewalld the lab runs: the machine's own, or another Debian release's package.

calfwd must work with firewalld 0.9 (RHEL 8), 1.x (RHEL 9, Debian 12) and 2.x (Debian 13,
Fedora), which differ exactly where calfwd cares (2.x stops flushing iptables with the
nftables backend). Debian's archive carries them all as architecture-independent Python, so
the lab fetches them instead of needing a machine per version:

- `apt-get update` and `apt-get download` run under a private apt configuration
  (APT_CONFIG: its own sources.list, lists, cache, empty dpkg status, no /etc/apt parts),
  so the host's apt sources and dpkg database are never read or written. apt checks the
  signed Release files against the Debian archive keyring and each package's hash.
- `dpkg-deb -x` unpacks the packages into CACHE/firewalld-<version>/, reused by later runs
  (delete the directory to fetch again); apt's directory is removed once the tree is there.
  A lock serialises concurrent test runs.
- tests/lab/firewalld_launcher.py runs that tree's firewalld and firewall-cmd with the host's
  /usr/bin/python3 and bindings.

A failed download raises with apt's output: the lab needs the archive, it does not skip.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

PYTHON = "/usr/bin/python3"
OWN = "own"
CACHE = Path(os.environ.get("CALFWD_LAB_CACHE", "/var/cache/calfwd-lab"))
MIRROR = os.environ.get("CALFWD_DEBIAN_MIRROR", "http://deb.debian.org/debian").rstrip("/")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LAUNCHER = Path(__file__).resolve().with_name("firewalld_launcher.py")
SITE = Path("usr/lib/python3/dist-packages")
MARKER = ".calfwd-lab.json"


@dataclass(frozen=True)
class Release:
    """A firewalld the lab can fetch, and the packages its tree needs on top of the host."""
    name: str  # what tests and CALFWD_LAB_FIREWALLD call it
    codename: str
    packages: Tuple[str, ...]


# Pure-Python dependencies the host (Debian 12/13) lacks come from the same release: 0.9.3
# does its polkit checks through python3-slip-dbus, which needs python3-decorator. 1.3 and
# 2.3 need only dbus, gi and nftables, which the host's firewalld already pulls in.
# 1.3 (bookworm) is there for Debian 13 hosts, whose own firewalld is 2.3.
RELEASES: Dict[str, Release] = {
    "0.9.3": Release("0.9.3", "bullseye", ("firewalld", "python3-firewall", "python3-slip",
                                           "python3-slip-dbus", "python3-decorator")),
    "1.3": Release("1.3", "bookworm", ("firewalld", "python3-firewall")),
    "2.3": Release("2.3", "trixie", ("firewalld", "python3-firewall")),
}


@dataclass(frozen=True)
class FirewalldBuild:
    """One firewalld: the machine's (root None) or an unpacked package tree."""
    name: str  # "own" or a RELEASES key
    version: str  # firewalld's own VERSION, e.g. "1.3.3"
    root: Optional[Path] = None

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def daemon_argv(self) -> List[str]:
        return self._argv(Path("usr/sbin/firewalld"))

    def client_argv(self) -> List[str]:
        return self._argv(Path("usr/bin/firewall-cmd"))

    @property
    def has_log_target(self) -> bool:
        """0.9.x and 1.0.0 have no --log-target (they log to syslog and --log-file)."""
        return "--log-target" in Path(self.daemon_argv()[-1]).read_text()

    def _argv(self, program: Path) -> List[str]:
        if self.root is None:
            return ["/" + str(program)]
        return [PYTHON, str(LAUNCHER), str(self.root), str(self.root / program)]


@functools.lru_cache(maxsize=None)
def own() -> FirewalldBuild:
    return FirewalldBuild(OWN, installed_version())


def installed_version(root: Optional[Path] = None) -> str:
    """firewall.config.VERSION as the host's python3 imports it (from `root` if given); "" if none."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    if root is not None:
        env["PYTHONPATH"] = str(root / SITE)
    proc = subprocess.run([PYTHON, "-c", "from firewall.config import VERSION; print(VERSION)"],
                          env=env, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def fetch(name: str, cache: Path = CACHE) -> FirewalldBuild:
    """The named firewalld, downloaded and unpacked on first use."""
    if name == OWN:
        return own()
    if name not in RELEASES:
        raise ValueError("unknown firewalld %r: use %s" % (name, ", ".join([OWN, *RELEASES])))
    release = RELEASES[name]
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / "lock"):
        root = _cached(cache, release) or _download(cache, release)
    version = installed_version(root)
    if not version:
        raise RuntimeError("%s: the unpacked firewall package does not import" % root)
    return FirewalldBuild(name, version, root)


def _cached(cache: Path, release: Release) -> Optional[Path]:
    for marker in sorted(cache.glob("firewalld-*/" + MARKER)):
        meta = json.loads(marker.read_text())
        if meta.get("codename") == release.codename and sorted(meta.get("packages", {})) == sorted(release.packages):
            return marker.parent
    return None


def _download(cache: Path, release: Release) -> Path:
    apt = AptRoot(cache / ("apt-" + release.codename), release.codename)
    debs = apt.download(release.packages)
    versions = {_deb_field(deb, "Package"): _deb_field(deb, "Version") for deb in debs}
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
    try:
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(staging)])
        meta = {"codename": release.codename, "packages": versions}
        (staging / MARKER).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        staging.chmod(0o755)
        final = cache / ("firewalld-" + versions["firewalld"])
        if final.exists():  # an older marker's package set: replace it
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(apt.path)  # its package lists take ~100 MB; the next fetch updates anyway
    return final


class AptRoot:
    """apt's whole world for one release, under one directory; the host's apt state unused."""

    def __init__(self, path: Path, codename: str):
        self.path = path
        self.codename = codename
        self.conf = path / "apt.conf"
        self.debs = path / "debs"

    def download(self, packages: Tuple[str, ...]) -> List[Path]:
        """`apt-get update`, then `apt-get download` of exactly these packages."""
        self._write()
        self.apt_get("update")
        for old in self.debs.glob("*.deb"):
            old.unlink()
        self.apt_get("download", *packages, cwd=self.debs)
        debs = sorted(self.debs.glob("*.deb"))
        if len(debs) != len(packages):
            raise RuntimeError("apt-get download gave %s for %s" % ([d.name for d in debs], packages))
        return debs

    def apt_get(self, *args: str, cwd: Optional[Path] = None) -> str:
        env = {"APT_CONFIG": str(self.conf), "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive",
               "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        return _run(["apt-get", "-q", *args], env=env, cwd=cwd)

    def _write(self) -> None:
        p = self.path
        for d in ("lists/partial", "cache/archives/partial", "log", "empty", "debs"):
            (p / d).mkdir(parents=True, exist_ok=True)
        (p / "status").touch()
        (p / "sources.list").write_text("deb [signed-by=%s] %s %s main\n" % (KEYRING, MIRROR, self.codename))
        settings = {
            # Read no configuration, sources, preferences or keys from /etc/apt.
            "Dir::Etc::main": "/dev/null", "Dir::Etc::Parts": p / "empty",
            "Dir::Etc::sourcelist": p / "sources.list", "Dir::Etc::sourceparts": p / "empty",
            "Dir::Etc::preferences": "/dev/null", "Dir::Etc::preferencesparts": p / "empty",
            "Dir::Etc::trusted": "/dev/null", "Dir::Etc::trustedparts": p / "empty",
            # Write nothing outside p; an empty dpkg status: the host's installs are not consulted.
            "Dir::State": p, "Dir::State::lists": p / "lists", "Dir::State::status": p / "status",
            "Dir::Cache": p / "cache", "Dir::Log": p / "log",
            "Acquire::Languages": "none",
        }
        self.conf.write_text("".join('%s "%s";\n' % kv for kv in settings.items()))
        # apt fetches as the unprivileged _apt user when it can write the target directory.
        try:
            uid = pwd.getpwnam("_apt").pw_uid
        except KeyError:
            return
        if os.geteuid() != 0:
            return
        for d in (self.debs, p / "lists/partial", p / "cache/archives/partial"):
            os.chown(d, uid, -1)


def _deb_field(deb: Path, field: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), field]).strip()


def _run(argv: List[str], env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None) -> str:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError("%s failed (exit %d):\n%s%s" % (" ".join(argv), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def parse_cases(spec: str, own_version: str = "") -> List[Tuple[str, str]]:
    """CALFWD_LAB_FIREWALLD: "VERSION[/BACKEND],...", or "all"; a version alone means both backends.

    A release the machine's own firewalld already is (1.3 on Debian 12, 2.3 on Debian 13)
    becomes "own": the same firewalld is not run twice.
    """
    backends = ("nftables", "iptables")
    if spec.strip() == "all":
        spec = ",".join([OWN, *RELEASES])
    cases: List[Tuple[str, str]] = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, backend = item.partition("/")
        if name != OWN and name not in RELEASES:
            raise ValueError("CALFWD_LAB_FIREWALLD: unknown firewalld %r (use %s or all)"
                             % (name, ", ".join([OWN, *RELEASES])))
        if backend and backend not in backends:
            raise ValueError("CALFWD_LAB_FIREWALLD: unknown backend %r in %r" % (backend, item))
        if is_release(name, own_version):
            name = OWN
        cases += [(name, b) for b in ((backend,) if backend else backends) if (name, b) not in cases]
    return cases


def is_release(name: str, version: str) -> bool:
    """Is `version` (e.g. "2.3.1") the release called `name` (e.g. "2.3")?"""
    return re.match(re.escape(name) + r"(\.|$)", version) is not None
