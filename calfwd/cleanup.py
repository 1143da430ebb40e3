"""`calfwd cleanup`: remove what calfwd made, and say exactly what stays and why.

Package removal runs it, so nothing may stay silently. firewalld is handled according to
what its bus says: RUNNING, over D-Bus (the plan in plan/firewalld/cleanup.py); STOPPED (nobody
owns its name), in its files with firewall-offline-cmd (plan/firewalld/offline.py);
anything else (bus unreachable, access denied, firewalld hung or not RUNNING) is a live
daemon calfwd cannot talk to: its files are not edited under it, and what stays is reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable, List, Optional, Tuple

from calfwd.config import Config
from calfwd.desired import FirewalldDesired, HostFacts, desired, desired_firewalld
from calfwd.drivers import RUNNING, STOPPED, FirewalldDriver, NftDriver
from calfwd.plan.firewalld import cleanup as firewalld_cleanup
from calfwd.plan.firewalld import offline as firewalld_offline
from calfwd.plan import nftables as nft_plan
from calfwd.plan.firewalld.model import (FirewalldPlan, Op, Reload, RemoveFromZone, RemovePolicy,
                                         RemoveZone)


@dataclass(frozen=True)
class CleanupResult:
    removed: Tuple[str, ...] = ()
    remains: Tuple[str, ...] = ()  # calfwd's things still there, one line each with why: exit 3
    left_alone: Tuple[str, ...] = ()  # objects with calfwd's names that calfwd did not make

    @property
    def clean(self) -> bool:
        return not self.remains


class Cleanup:
    """One run; the drivers are the Reconciler's plus the offline one (firewalld's files)."""

    def __init__(self, nft: NftDriver, firewalld: Optional[FirewalldDriver], offline: Optional[Any], bus_error: str = "",
                 progress: Optional[Callable[[str], None]] = None) -> None:
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


def nft_orphans(nft: NftDriver, family: str, table: str) -> Tuple[str, ...]:
    """Tables of `family` other than `table` that carry calfwd's mark: made by calfwd under a
    name the config no longer has."""
    names = sorted(t["name"] for t in nft.tables() if t.get("family") == family and t.get("name") != table)
    return tuple(n for n in names if nft.has_set(family, n, nft_plan.MARK_SET))
