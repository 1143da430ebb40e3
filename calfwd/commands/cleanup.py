"""`calfwd cleanup`: remove everything calfwd made, and say exactly what stays and why.

What it removes, in this order (run() reads as this list):
  1. calfwd's nftables table, and tables it made under an earlier name (by its mark);
  2. calfwd's firewalld zone, policies, service and entries (class Cleanup, below);
  3. the flush guard's firewalld.service drop-in, if calfwd wrote it (commands/guard.py);
  4. the daemon's status files under /run/calfwd (drivers/statusfile.py);
  5. the [metrics] textfile, if calfwd wrote it (status/metrics_file.py).
  6. the [labels] features_file, if calfwd wrote it (status/labels.py).

Package removal runs it, so nothing may stay silently. firewalld is handled according to
what its bus says: RUNNING, over D-Bus (the plan in plan/firewalld/cleanup.py); STOPPED (nobody
owns its name), in its files with firewall-offline-cmd (plan/firewalld/offline.py);
anything else (bus unreachable, access denied, firewalld hung or not RUNNING) is a live
daemon calfwd cannot talk to: its files are not edited under it, and what stays is reported.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, List, Optional, Tuple

from calfwd import drivers
from calfwd.commands.common import EXIT_OK, EXIT_SYSTEM, fail, load_config
from calfwd.commands.guard import remove_guard
from calfwd.config import Config
from calfwd.desired import FirewalldDesired, HostFacts, desired, desired_firewalld
from calfwd.status.labels import remove_written as remove_labels
from calfwd.doctor import reads as host
from calfwd.drivers import RUNNING, STOPPED, FirewalldDriver, NftDriver
from calfwd.events import Reporter
from calfwd.plan.firewalld import cleanup as firewalld_cleanup
from calfwd.plan.firewalld import offline as firewalld_offline
from calfwd.plan import nftables as nft_plan
from calfwd.plan.firewalld.model import (FirewalldPlan, Op, Reload, RemoveFromZone, RemovePolicy,
                                         RemoveZone)
from calfwd.reconcile import nft_orphans


def run(args: argparse.Namespace) -> int:
    from calfwd.drivers import statusfile
    from calfwd.drivers.firewalld_offline import OfflineFirewalld

    config = load_config(args.config, strict_owner=True, check_program=False)
    firewalld: Optional[drivers.FirewalldDriver] = None
    bus_error = ""
    try:  # also with [firewalld] enabled = false: objects made before that switch go too
        firewalld = drivers.firewalld_driver()
    except Exception as exc:  # no bus, or a wrong DBUS_SYSTEM_BUS_ADDRESS: firewalld may still run
        bus_error = f"no system bus, so whether firewalld runs is unknown: {exc}"
    offline = OfflineFirewalld(host.firewalld_dir(args.firewalld_dir))
    # 1, 2: nftables and firewalld. Each removal is printed (and flushed) as it is done:
    # package removal may be killed halfway, and what it already removed must be on record.
    result = Cleanup(drivers.nft_driver(), firewalld, offline, bus_error, progress=_said_removed).run(config)
    removed, remains, left_alone = result.removed, result.remains, result.left_alone
    guard_action, guard_error = remove_guard(None)  # 3: the flush guard
    if guard_action:
        removed += (_said_removed(guard_action),)
    try:  # 4: the daemon's status files
        status_files = statusfile.remove()
    except OSError as exc:
        status_files, remains = None, remains + (f"{statusfile.run_dir()}: {exc.strerror or exc}",)
    if status_files:
        removed += (_said_removed(status_files),)
    metrics_file, metrics_left = _remove_metrics(config.metrics_textfile)  # 5: the metrics file
    removed += (_said_removed(metrics_file),) if metrics_file else ()
    left_alone += (metrics_left,) if metrics_left else ()
    labels_file, labels_left = remove_labels(config.labels_features_file)  # 6: the node labels file
    removed += (_said_removed(labels_file),) if labels_file else ()
    left_alone += (labels_left,) if labels_left else ()
    if guard_error:
        remains += (guard_error,)
    for line in left_alone:
        print(line)
    if not removed and not remains:
        print("nothing of calfwd's was there")
    if removed:  # package removal runs this: leave a record in the journal
        Reporter().emit("cleanup", "calfwd cleanup removed: " + "; ".join(removed)
                        + ("; NOT removed: " + "; ".join(remains) if remains else ""),
                        removed=len(removed), remains=len(remains))
    return fail(remains, EXIT_SYSTEM) if remains else EXIT_OK


def _said_removed(action: str) -> str:
    print(f"removed: {action}", flush=True)
    return action


def _remove_metrics(path: str) -> Tuple[str, str]:
    """The metrics file, or node_exporter serves its last values for ever; (what was
    removed, what was left alone and why). Only the regular file calfwd wrote goes: a link,
    FIFO or device there is neither followed nor waited on (status/metrics_file.remove_written)."""
    from calfwd.status.metrics_file import remove_written

    if not path:
        return "", ""
    removed, left = remove_written(path)
    return (f"metrics file {path}" if removed else ""), left


@dataclass(frozen=True)
class CleanupResult:
    removed: Tuple[str, ...] = ()
    remains: Tuple[str, ...] = ()  # calfwd's things still there, one line each with why: exit 3
    left_alone: Tuple[str, ...] = ()  # objects with calfwd's names that calfwd did not make

    @property
    def clean(self) -> bool:
        return not self.remains


class Cleanup:
    """Step 1 and 2 of run(): nftables, then firewalld (D-Bus, or its files through the offline
    driver)."""

    def __init__(self, nft: NftDriver, firewalld: Optional[FirewalldDriver], offline: Optional[Any], bus_error: str = "",
                 progress: Optional[Callable[[str], object]] = None) -> None:
        self.nft = nft
        self.firewalld = firewalld
        self.offline = offline
        self.bus_error = bus_error  # why there is no firewalld client (no system bus)
        # Told of each removal as it is done: package removal may be killed halfway, and what
        # was removed by then must be on record (the CLI prints it at once).
        self.progress = progress or (lambda _line: None)
        self.removed: List[str] = []
        self.remains: List[str] = []
        self.left_alone: List[str] = []

    def run(self, config: Config) -> CleanupResult:
        self._nftables(config)
        if config.firewalld.enabled:
            self._firewalld(config)
        else:
            self._firewalld_if_known(config)
        return CleanupResult(tuple(self.removed), tuple(self.remains), tuple(self.left_alone))

    def _removed(self, *lines: str) -> None:
        for line in lines:
            self.removed.append(line)
            self.progress(line)

    def _firewalld_if_known(self, config: Config) -> None:
        """[firewalld] enabled = false now, but calfwd may have made objects before the switch:
        removed where firewalld can be asked (running) or its files read (stopped); a host
        without a bus or without firewalld is not an error here."""
        firewalld = self.firewalld
        if firewalld is None:
            return
        kind, why = firewalld.reachability()
        try:
            if kind == RUNNING:
                self._online(config, firewalld)
            elif kind == STOPPED and self.offline is not None and os.path.isdir(self.offline.directory):
                self._on_disk(desired_firewalld(config, HostFacts()), why, stopped=firewalld)
        except Exception as exc:
            self.remains.append(f"firewalld: {exc}")

    def _nftables(self, config: Config) -> None:
        d = desired(config, HostFacts()).nft
        try:
            orphans = nft_orphans(self.nft, d.family, d.table)
            p = nft_plan.cleanup_plan(d.family, d.table, self.nft.read_table(d.family, d.table), orphans)
            if p.batch is not None:  # not p.empty
                self.nft.run(p.batch)
                self._removed(*p.reasons)
            self.left_alone.extend(f"nftables: {c}" for c in p.conflicts)
        except Exception as exc:
            self.remains.append(f"nftables: {exc}")

    def _firewalld(self, config: Config) -> None:
        firewalld = self.firewalld
        if firewalld is None:
            kind, why = "", self.bus_error or "no firewalld client"
        else:
            kind, why = firewalld.reachability()
        try:
            if firewalld is not None and kind == RUNNING:
                self._online(config, firewalld)
            else:
                self._on_disk(desired_firewalld(config, HostFacts()), why,
                              stopped=firewalld if kind == STOPPED else None)
        except Exception as exc:  # driver errors carry a one-line message
            self.remains.append(f"firewalld: {exc}")

    # -- firewalld running: D-Bus ---------------------------------------------------------

    def _online(self, config: Config, firewalld: FirewalldDriver) -> None:
        facts = firewalld.facts()
        want = desired_firewalld(config, facts)
        if want.host_service is not None:  # wherever calfwd put its service, whatever the version now
            want = replace(want, catch_all_zone=facts.default_zone)
        plan = firewalld_cleanup.cleanup_plan(want, firewalld.read(want))
        self.left_alone.extend(f"firewalld: {c}" for c in plan.conflicts)
        failed = ""
        for op in plan.ops:  # one at a time: a failure stops the rest, which the read-back lists
            try:
                firewalld.apply(FirewalldPlan((op,)))
            except Exception as exc:
                failed = op.description
                self.remains.append(f"firewalld: {_what(op)} not removed: {exc}")
                break
            self._removed(op.description)
        # Read back: exit 0 only when nothing of calfwd's is left.
        self.remains.extend(f"firewalld: {_what(op)} still there after cleanup"
                            for op in firewalld_cleanup.cleanup_plan(want, firewalld.read(want)).ops
                            if op.description != failed)

    # -- firewalld stopped, or not reachable: its files -----------------------------------

    def _on_disk(self, want: FirewalldDesired, why: str, stopped: Optional[FirewalldDriver] = None) -> None:
        """stopped: the client that found firewalld stopped, asked again before each edit; None:
        firewalld is not known to be stopped, so its files are only read."""
        offline = self.offline
        if offline is None:
            self.remains.append(f"firewalld: its files were not looked at: {why}")
            return
        plan = firewalld_offline.offline_cleanup_plan(want, self._read(offline))
        self.left_alone.extend(f"firewalld: {c}" for c in plan.left_alone)
        self.remains.extend(f"firewalld: {line}" for line in plan.remains)
        if stopped is None:
            self.remains.extend(f"firewalld: {_what(op)} not removed: {why}; calfwd edits firewalld's "
                                "files only while nobody owns its bus name" for op in plan.ops)
            if want.mode == "runtime":
                self.remains.append(f"firewalld: calfwd's runtime bindings and policy entries, if any, "
                                    f"not removed: {why}")
            return
        where = f"{offline.directory}, with firewall-offline-cmd"
        failed = set()
        for op in plan.ops:
            kind, why_now = stopped.reachability()
            if kind != STOPPED:  # firewalld started meanwhile: the files are its own again
                failed.add(op.description)
                self.remains.append(f"firewalld: {_what(op)} not removed: firewalld started during "
                                    f"cleanup ({why_now or kind}); run calfwd cleanup again")
                continue
            try:
                offline.run(op)
            except Exception as exc:
                failed.add(op.description)
                self.remains.append(f"firewalld: {_what(op)} not removed from {where}: {exc}")
                continue
            self._removed(f"{op.description} in {where}")
        if plan.ops:  # read back: exit 0 only when nothing of calfwd's is left
            after = firewalld_offline.offline_cleanup_plan(want, self._read(offline))
            self.remains.extend(f"firewalld: {_what(op)} still in {offline.directory} after cleanup"
                                for op in after.ops if op.description not in failed)

    @staticmethod
    def _read(offline: Any) -> firewalld_offline.OnDisk:
        try:
            return offline.read()
        except OSError as exc:
            raise RuntimeError(f"{offline.directory} cannot be read ({exc.strerror or exc}): calfwd's "
                               "zone and policies there, if any, were not removed") from None


def _what(op: Op) -> str:
    """The object an operation would have removed: what a line about it names."""
    if isinstance(op, RemoveFromZone):
        return f"{op.kind} {op.item} in zone '{op.zone}' ({'permanent' if op.permanent else 'runtime'})"
    if isinstance(op, (RemoveZone, RemovePolicy)):
        return f"{op.obj} '{op.name}' (permanent)"
    if isinstance(op, Reload):
        return f"runtime state ({'; '.join(op.reasons)})"
    return op.description

