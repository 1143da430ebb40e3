"""`calfwd apply --offline`: calfwd's zone, policies (and service) in firewalld's files before
firewalld ever runs, as image builds and kickstart files prepare firewalld.

The facts the online path reads from the running firewalld come from what is installed and
from the directory instead: the version from firewall-offline-cmd (the firewalld that will
run), the default zone from its firewalld.conf (firewalld's own fallback, public, without one).
No WireGuard device exists yet: the daemon opens its port when Calico makes one. nftables is
left to the daemon; its table is runtime state and firewalld never removes it. The flush guard
is carried out as `apply` does (commands/guard.py), judged offline, and only for this host's
own firewalld directory.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, List, Mapping, Tuple

from calfwd.commands.common import EXIT_CONFIG, EXIT_OK, EXIT_SYSTEM, fail
from calfwd.commands.guard import guard_auto
from calfwd.config import Config
from calfwd.desired import HostFacts, desired_firewalld
from calfwd import drivers
from calfwd.doctor import reads as host
from calfwd.drivers import STOPPED
from calfwd.plan.firewalld.offline_apply import offline_apply_plan

FALLBACK_ZONE = "public"  # firewalld's DefaultZone when firewalld.conf does not set one


@dataclass(frozen=True)
class OfflineResult:
    changed: Tuple[str, ...] = ()
    conflicts: Tuple[str, ...] = ()
    remains: Tuple[str, ...] = ()  # what could not be written, with why: exit 3
    version: str = ""


def run(args: argparse.Namespace, config: Config) -> int:
    """`calfwd apply --offline`, config loaded already (commands/apply.py)."""
    from calfwd.drivers.firewalld_offline import OfflineFirewalld, nonregular_files

    directory = host.firewalld_dir(args.firewalld_dir)
    print("nftables: not touched offline (the daemon makes calfwd's table when it runs)")
    if not config.firewalld.enabled:
        print("firewalld: disabled in the config ([firewalld] enabled = false); nothing written")
        return EXIT_OK
    if config.firewalld.mode != "permanent":
        return fail([f"{args.config}: [firewalld] mode: \"{config.firewalld.mode}\" never writes firewalld's "
                     "permanent configuration, which is all apply --offline writes: set mode = \"permanent\" "
                     "or run `calfwd apply` once firewalld runs"], EXIT_CONFIG)
    busy = live_firewalld(directory, host.firewalld_dir(None))
    if busy:
        return fail([busy], EXIT_SYSTEM)
    blocking = nonregular_files(directory)  # firewall-offline-cmd would hang on them, and calfwd
    if blocking:
        return fail([f"firewalld: nothing written to {directory}: {line}" for line in blocking], EXIT_SYSTEM)
    try:
        conf = host.read_firewalld_conf(directory)
    except OSError as exc:
        return fail([f"firewalld: nothing written: {directory}/firewalld.conf: {exc.strerror or exc}"], EXIT_SYSTEM)
    result = apply_offline(config, OfflineFirewalld(directory), conf)
    where = f"firewalld ({directory}, offline, firewalld {result.version or 'version unknown'})"
    if result.changed:
        print(f"{where}: changed:")
        for action in result.changed:
            print(f"  - {action}")
    elif not result.remains:
        print(f"{where}: {'nothing changed' if result.conflicts else 'in sync, nothing changed'}")
    for conflict in result.conflicts:
        print(f"firewalld: conflict: {conflict}")
    if directory == host.firewalld_dir(None) or same_directory(directory, host.firewalld_dir(None)):
        guard_error = guard_auto(args.config, config, fw_dir=directory, offline=True)
    else:  # an image's tree: its firewalld and its /etc/systemd are not this host's
        guard_error = ""
        print(f"flush guard: not judged: {directory} is not this host's firewalld configuration; the "
              "image's own `calfwd guard auto` (the package's %post) installs it where needed")
    remains = list(result.remains) + ([guard_error] if guard_error else [])
    return fail(remains, EXIT_SYSTEM) if remains else EXIT_OK


def offline_facts(version: str, firewalld_conf: Mapping[str, str], cni_kind: str = "auto") -> HostFacts:
    """The files' firewalld, and the configured CNI: the directory may be an image's, so
    nothing of this host is read ("auto" serves Calico, as before; the daemon judges later)."""
    from calfwd.judge.cni import CniFacts, judge
    return HostFacts(firewalld_version=version, default_zone=firewalld_conf.get("DefaultZone") or FALLBACK_ZONE,
                     cni=judge(CniFacts(), cni_kind))


def apply_offline(config: Config, offline: Any, firewalld_conf: Mapping[str, str]) -> OfflineResult:
    """Plan against the files, run the tool step by step (a failure stops the rest), then read
    the files again: exit 0 only when they hold what the online planner wants."""
    where = offline.directory
    try:
        version = offline.version()
        want = desired_firewalld(config, offline_facts(version, firewalld_conf, config.cni_kind))
        plan = offline_apply_plan(want, offline.read_config())
    except Exception as exc:  # the tool missing or failing, a file that cannot be read
        return OfflineResult(remains=(f"firewalld: nothing written to {where}: {_why(exc)}",))
    changed: List[str] = []
    remains: List[str] = []
    failed = ""
    for step in plan.steps:
        try:
            for args in step.runs:
                offline.run_args(args)
        except Exception as exc:
            failed = step.description
            remains.append(f"firewalld: {failed}: not done in {where}: {_why(exc)}")
            break
        changed.append(step.description)
    try:
        after = offline_apply_plan(want, offline.read_config())
    except Exception as exc:
        return OfflineResult(tuple(changed), plan.conflicts, tuple(remains) + (
            f"firewalld: {where} cannot be read back: {_why(exc)}",), version)
    remains += [f"firewalld: still to do in {where}: {s.description}" for s in after.steps
                if s.description != failed]
    return OfflineResult(tuple(changed), after.conflicts, tuple(remains), version)


WRITTEN = ("zones", "policies", "services")  # where firewall-offline-cmd writes for calfwd


def shared_with(directory: str, default_directory: str) -> str:
    """How `directory` reaches this host's firewalld's files, or "": the same directory by
    another path (a symbolic link, a bind mount), or one of WRITTEN in it that is firewalld's
    directory or one of its subdirectories (a link into it, a bind mount of it). Judged by
    device and inode, not by names: a bind mount has a path of its own."""
    try:
        live = os.stat(default_directory)
    except OSError:  # no such directory: nothing of firewalld's to share
        return ""
    ids = {(live.st_dev, live.st_ino): default_directory}
    for sub in os.listdir(default_directory):
        path = os.path.join(default_directory, sub)
        try:
            info = os.stat(path)
        except OSError:
            continue
        if os.path.isdir(path):
            ids[(info.st_dev, info.st_ino)] = path
    for path in [directory] + [os.path.join(directory, sub) for sub in WRITTEN]:
        try:
            info = os.stat(path)  # through links and bind mounts alike
        except OSError:
            continue
        same = ids.get((info.st_dev, info.st_ino))
        if same:
            return f"{path} is {same}"
    return ""


def same_directory(one: str, other: str) -> bool:
    """The same directory, by whatever path (a link, a bind mount)."""
    try:
        a, b = os.stat(one), os.stat(other)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def live_firewalld(directory: str, default_directory: str) -> str:
    """Why calfwd must not edit `directory` now, or "": the running firewalld's own files are
    its own (it would overwrite them, or half-load them at its next reload), by whatever path
    they are reached (shared_with). Another directory (an image's) is never in use by this
    host's firewalld."""
    shared = shared_with(directory, default_directory)
    if not shared:
        return ""
    try:
        firewalld = drivers.firewalld_driver()
    except Exception:  # no system bus (a chroot, an image build): no firewalld runs on it
        return ""
    kind, why = firewalld.reachability()
    if kind == STOPPED:
        return ""
    via = "" if shared == f"{directory} is {directory}" else f" ({shared})"
    return (f"firewalld: nothing written to {directory}{via}: firewalld is {kind} "
            f"({why or 'it owns its bus name'}) and those are its files: run `calfwd apply` without "
            "--offline, or stop firewalld first")


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__
