"""calfwd and the kernel's nftables changes: what the daemon does with each monitor line.

drivers/nftmonitor.py delivers the lines of `nft --json monitor`; watch/kernel_events.py says which
concern calfwd; this module acts on them, on the daemon's GLib loop:

- calfwd's own table changed by someone else: repaired at once (nftables layer only), with a
  brake when another writer keeps undoing it;
- a change to the chains holding Felix's and kube-proxy's top-level jumps: the jumps are
  followed from the monitor's own rule events (flushes.JumpIndex: a jump rule's handle
  added or deleted), so a change costs the same in a chain of 3,000 rules as in one of 10; the
  chains are read whole only at start, when the monitor (re)starts or lost events, or without
  it. flushes.FlushTracker turns a loss into one report per flush;
- firewalld's drop table brackets its reloads (the cause of a flush); its main table vanishing
  while firewalld runs is reported, never touched;
- Felix's pool sets in its nftables tables changed (ip_pools = "auto"): the daemon reconciles.

The daemon tells it what firewalld does on the bus (begin/end) and when it reconciled, through
interface.Watch only; the daemon still decides when to reconcile. It reads with the nft
driver and repairs with the callable the daemon binds to its reconciler, never seeing that.
"""

from __future__ import annotations

import time
from typing import AbstractSet, Any, Callable, List, Optional, Set, Tuple

from calfwd.watch import kernel_events
from calfwd.config import Config
from calfwd.drivers import NftDriver
from calfwd.drivers.nftmonitor import NftMonitor
from calfwd.watch.flush_command import CommandRunner
from calfwd.watch.flushes import CALICO, Flush, FlushTracker, JumpIndex, Outage, event_kind, flushed_message
from calfwd.watch.interface import Repair

KERNEL_DELAY = 0.005  # seconds: the events of one transaction arrive together; read once
MONITOR_SETTLE = 0.2  # look at everything this long after the monitor (re)started
TABLE_CHECK = 2.5  # seconds after firewalld's table was deleted: is it still gone?
# More repairs than this within REPAIR_WINDOW seconds: someone keeps rewriting calfwd's table
# (another calfwd with another config?). Event-driven repair pauses until the next resync.
REPAIR_BURST, REPAIR_WINDOW = 20, 10.0


class KernelWatch:
    """interface.Watch, its one implementation (the daemon sees nothing else of it).

    nft: the driver it reads firewalld's tables and the watched chains with; repair: puts
    calfwd's table back (the daemon binds it to its reconciler)."""

    def __init__(self, glib: Any, reporter: Any, nft: NftDriver, repair: Repair, config: Callable[[], Config],
                 owner: Callable[[], Optional[str]], on_status: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic,
                 on_pools: Callable[[], None] = lambda: None) -> None:
        self.glib = glib
        self.reporter = reporter
        self.nft = nft
        self._repair_table = repair
        self._config = config
        self._owner = owner
        self._on_status = on_status
        self._on_pools = on_pools  # Felix's nft pool sets changed: the daemon reconciles
        self._clock = clock
        self.flushes = FlushTracker(clock)
        self.runner = CommandRunner(glib, reporter)
        self.firewalld_version = ""
        self.monitor: Optional[NftMonitor] = None
        self._monitor_down: Optional[str] = None  # why, while it is down and was reported
        self._flush_timer: Optional[int] = None
        self._kernel_pending: Set[str] = set()
        self._stale_chains: Set[Tuple[str, str, str]] = set()  # watched chains to read again
        self._jumps = JumpIndex()  # the watched jumps: read, then followed event by event
        self._kernel_timer: Optional[int] = None
        self._table_timer: Optional[int] = None
        self.firewalld_table_missing = False
        self.repairs = 0
        self._repair_error: Optional[str] = None
        self._repair_times: List[float] = []
        self._repairs_paused = False
        self._own_table_missing = False  # seen gone while repairs are paused: egress is down

    # -- what the daemon calls -----------------------------------------------------------

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None

    def configure(self, enabled: bool) -> None:
        """After SIGHUP: [daemon] kernel_events may have changed."""
        if enabled and self.monitor is None:
            self.start()
        elif not enabled:
            self.stop()

    def begin(self, activity: str) -> None:
        self.flushes.begin(activity)
        self.arm_flush_timer()

    def end(self, activity: str, observe: bool = False) -> None:
        self.flushes.end(activity)
        if observe:
            self.observe(late=True)
        self.arm_flush_timer()

    def busy(self, activity: str) -> bool:
        return self.flushes.busy(activity)

    def track_version(self, firewalld_version: str) -> None:
        """The version a flush report names: the last one known (a failed read says "")."""
        self.firewalld_version = firewalld_version or self.firewalld_version

    def carry(self, outages: Tuple[Outage, ...]) -> None:
        """What a previous run saw flushed and not undone: still gone until observed back."""
        self.flushes.carry(outages)

    def outages(self) -> Tuple[Outage, ...]:
        return self.flushes.outages()

    def reconciled(self, triggers: AbstractSet[str], firewalld_version: str) -> None:
        """triggers: every one the run stood for (a resync coalesced with others still counts)."""
        self.track_version(firewalld_version)
        if "resync" in triggers:
            self._repairs_paused, self._repair_times = False, []
            self._own_table_missing = False  # that reconcile put it back (or says why not)
        elif self._repairs_paused:
            self._judge_paused_table()  # SIGHUP's or a firewalld event's reconcile put it back
        if not self.following_kernel:  # the monitor reports every change to those chains
            self.observe(late=True)

    def start(self) -> None:
        self.monitor = NftMonitor(self.glib, self._on_kernel_line, self._on_monitor_down,
                                  self._on_monitor_up, self._clock)
        self.monitor.start()

    def _on_monitor_up(self) -> None:
        # Whatever changed while nobody listened (or before nft subscribed) is read once, after
        # the child has surely subscribed.
        self.glib.timeout_add(int(MONITOR_SETTLE * 1000), self._monitor_settled)

    def _monitor_settled(self) -> bool:
        if self.monitor is not None and self.monitor.running:
            if self._monitor_down is not None:
                self.reporter.emit("kernel-events-restored", "following the kernel's nftables "
                                   "changes again (nft monitor is back)")
                self._monitor_down = None
            self._kernel_pending |= {kernel_events.OWN, kernel_events.JUMPS, kernel_events.FIREWALLD}
            self._stale_chains.update(kernel_events.watched_chain_refs())
            self._schedule_kernel_work()
        return False

    def _on_monitor_down(self, why: str) -> None:
        if self._monitor_down is None:  # said once per outage, not at every retry
            self.reporter.emit("kernel-events-lost", f"not following the kernel's nftables changes: "
                               f"{why}. Until it is back, calfwd's table is repaired and flushes are "
                               f"seen only at reconciles (resync every {self._config().resync_interval:g} s)",
                               reason=why)
        self._monitor_down = why

    def _on_kernel_line(self, line: str) -> None:
        family, table = "inet", self._config().nft_table
        event = kernel_events.classify(line, family, table)
        if event is None:
            return
        if event.concern == kernel_events.POOLS:
            if self._config().auto_pools:
                self._on_pools()
            return
        if event.concern == kernel_events.FIREWALLD:
            if self._kernel_pending:  # what came before firewalld's step is judged before it
                self._kernel_work()
            self._on_firewalld_table(event)
            return
        if event.concern == kernel_events.LOST:
            self._kernel_pending |= {kernel_events.OWN, kernel_events.JUMPS, kernel_events.FIREWALLD}
            self._stale_chains.update(kernel_events.watched_chain_refs())
        elif event.concern == kernel_events.JUMPS:
            changed = self._follow(event, line)
            if changed is None:  # cannot be followed from the line: read the chain
                self._stale_chains.update(kernel_events.refs_of(event))
            elif not changed:
                return  # no watched jump came or went: nothing to judge, nothing read
            self._kernel_pending.add(event.concern)
        else:
            self._kernel_pending.add(event.concern)
        self._schedule_kernel_work()

    def _follow(self, event: Any, line: str) -> Optional[bool]:
        """The jump index after one JUMPS event: whether the watched jumps changed, or None
        when only a read can tell."""
        if event.kind == "table":
            if event.verb != "delete":
                return False  # a new table is empty; an existing one keeps its chains
            return any([self._jumps.chain_deleted(ref) for ref in kernel_events.refs_of(event)])
        ref = (event.family, event.table, event.chain)
        if event.kind == "chain":
            return self._jumps.chain_deleted(ref) if event.verb == "delete" else self._jumps.chain_added(ref)
        if event.handle is None:
            return None
        if event.verb == "delete":
            return self._jumps.rule_deleted(ref, event.handle)
        return self._jumps.rule_added(ref, event.handle, kernel_events.rule_body(line, event))

    def _on_firewalld_table(self, event: Any) -> None:
        """firewalld's drop table brackets its reload; its main table should never vanish."""
        if event.table == "firewalld_policy_drop":
            if event.verb == "delete":
                self.flushes.end("reload")
            elif self._owner() and not self.flushes.busy("start"):
                self.flushes.begin("reload")
            self.arm_flush_timer()
        elif event.verb == "delete":
            if self._table_timer is not None:
                self.glib.source_remove(self._table_timer)
            self._table_timer = self.glib.timeout_add(int(TABLE_CHECK * 1000), self._check_firewalld_table)
        else:
            self._firewalld_table_back()

    def _firewalld_table_back(self) -> None:
        if self.firewalld_table_missing:
            self.firewalld_table_missing = False
            self.reporter.emit("firewalld-table-restored", "firewalld's table inet firewalld is back")

    def _inet_tables(self) -> set:
        return {t.get("name") for t in self.nft.tables() if t.get("family") == "inet"}

    def _check_firewalld_table(self) -> bool:
        self._table_timer = None
        if not self._owner() or self.flushes.busy("start") or self.flushes.busy("reload"):
            return False  # stopped, or rebuilding it right now
        try:
            present = "firewalld" in self._inet_tables()
        except Exception:
            return False
        if present or self.firewalld_table_missing:
            return False
        self.firewalld_table_missing = True
        self.reporter.emit("firewalld-table-missing", "firewalld's table inet firewalld vanished while "
                           "firewalld is running (a `flush ruleset`, e.g. from nftables.service?): the "
                           "host firewall filters nothing until firewalld rebuilds it. calfwd never "
                           "writes firewalld's table. Fix: systemctl restart firewalld (firewalld "
                           "1.x fails its next reload once, unable to delete the missing table), "
                           "and keep nftables.service from flushing (systemctl mask nftables)")
        self._on_status()
        return False

    def _schedule_kernel_work(self) -> None:
        if self._kernel_timer is None:
            self._kernel_timer = self.glib.timeout_add(int(KERNEL_DELAY * 1000), self._kernel_work)

    def _kernel_work(self) -> bool:
        if self._kernel_timer is not None:
            self.glib.source_remove(self._kernel_timer)
            self._kernel_timer = None
        pending, self._kernel_pending = self._kernel_pending, set()
        try:
            if kernel_events.FIREWALLD in pending:
                self._resync_firewalld_tables()
            if kernel_events.OWN in pending:
                self._repair()
            if kernel_events.JUMPS in pending:
                stale, self._stale_chains = self._stale_chains, set()
                if stale:
                    self.observe(refs=tuple(sorted(stale)))
                else:
                    self._judge()
        except Exception as exc:  # a bug here must not cost the main loop
            self.reporter.emit("reconcile-failed", f"handling a kernel event failed: "
                               f"{type(exc).__name__}: {exc}", trigger="nft-changed")
        return False

    def _resync_firewalld_tables(self) -> None:
        """After lost events or a monitor restart: firewalld's tables as they are now."""
        names = self._inet_tables()
        if "firewalld_policy_drop" not in names and self.flushes.busy("reload"):
            self.flushes.end("reload")
        if "firewalld" in names:
            self._firewalld_table_back()

    def _repair(self) -> None:
        """Someone else changed calfwd's table: put it back now (nftables layer only)."""
        if self._repairs_paused:  # the resync's reconcile still repairs it, and resumes event repair
            self._judge_paused_table()
            return
        layer, errors, seconds = self._repair_table(self._config())
        ms = round(seconds * 1000, 2)
        if errors:
            if errors[0] != self._repair_error:  # the resync reports it again if it persists
                self.reporter.emit("reconcile-failed", f"repairing calfwd's table failed: {errors[0]}",
                                   trigger="nft-changed", duration_ms=ms)
            self._repair_error = errors[0]
            return
        self._repair_error = None
        if not layer.empty:
            now = self._clock()
            self._repair_times = [t for t in self._repair_times if now - t < REPAIR_WINDOW] + [now]
            if len(self._repair_times) > REPAIR_BURST:
                self._repairs_paused = True
                self.reporter.emit("conflict", f"calfwd's table {layer.plan.table} was changed "
                                   f"{len(self._repair_times)} times in {REPAIR_WINDOW:g} s by someone "
                                   "else (another calfwd with another config? a configuration-management "
                                   "loop?); calfwd stops repairing it on every change and repairs it at "
                                   f"each resync (every {self._config().resync_interval:g} s) until that stops")
                self._on_status()  # the verdict says so now, not at the next resync
            self.repairs += 1
            self.reporter.emit("table-repaired", f"calfwd's table {layer.plan.table} was changed by "
                               f"someone else ({'; '.join(layer.actions)}); restored in {ms} ms",
                               table=layer.plan.table, changes=len(layer.actions), duration_ms=ms,
                               actions=list(layer.actions))

    def _judge_paused_table(self) -> None:
        """Repairs are paused and calfwd's table changed again: is it gone? Then natOutgoing is
        gone until the resync, and the verdict must say so now."""
        try:
            missing = self._config().nft_table not in self._inet_tables()
        except Exception:
            return  # the resync's reconcile reports nftables errors
        if missing != self._own_table_missing:
            self._own_table_missing = missing
            self._on_status()

    def blocking(self) -> Tuple[str, ...]:
        """What the kernel side knows shuts a path now (health.assess's kernel_blocking)."""
        if not (self._repairs_paused and self._own_table_missing):
            return ()
        config = self._config()
        return (f"calfwd's table inet {config.nft_table} is missing and calfwd has paused its repairs (it "
                f"was changed more than {REPAIR_BURST} times in {REPAIR_WINDOW:g} s by someone else): pods "
                f"have no natOutgoing until the next resync (every {config.resync_interval:g} s). Fix: find "
                "and stop the other writer (another calfwd, a configuration-management loop, nftables.service), "
                "then systemctl reload calfwd",)

    @property
    def following_kernel(self) -> bool:
        return self.monitor is not None and self.monitor.running and self._monitor_down is None

    def observe(self, late: bool = False, refs: Optional[tuple] = None) -> None:
        """Read the watched chains again (only `refs` when given: reading all of them costs
        about 10 ms of the main loop, and a long chain more) and tell the tracker. While the
        monitor runs, only its (re)start and lost events come here: changes are followed."""
        refs = refs if refs is not None else kernel_events.watched_chain_refs()
        try:
            chains = self.nft.read_chains(refs)
        except Exception:
            return  # reconcile reports nftables errors; the next event or resync looks again
        for ref in refs:
            self._jumps.load(ref, chains.get(ref))
        self._judge(late)

    def _judge(self, late: bool = False) -> None:
        before = self.flushes.outages()
        self.flushes.observe(self._jumps.jumps(), late=late and not self.following_kernel)
        if self.flushes.outages() != before:  # Felix or kube-proxy put their rules back
            self._on_status()
        self.arm_flush_timer()

    def arm_flush_timer(self) -> None:
        if self._flush_timer is not None:
            self.glib.source_remove(self._flush_timer)
            self._flush_timer = None
        due = self.flushes.due()
        if due is not None:
            wait = max(0.0, due - self._clock())
            self._flush_timer = self.glib.timeout_add(int(wait * 1000) + 1, self._flush_due)

    def _flush_due(self) -> bool:
        self._flush_timer = None
        flush = self.flushes.poll()
        if flush is not None:
            self._report_flush(flush)
        self.arm_flush_timer()
        return False

    def _report_flush(self, flush: Flush) -> None:
        config = self._config()
        note = ""
        if CALICO in flush.owners and flush.cause:  # not for a Felix that removed its own rules
            try:
                note = self.runner.maybe_run(config.on_calico_flush, config.on_calico_flush_interval,
                                             config.on_calico_flush_timeout)
            except OSError as exc:  # e.g. no file descriptor left for its pipe: the warning still goes out
                note = f"on_calico_flush could not start ({exc.strerror or exc})"
        self.reporter.emit(event_kind(flush), flushed_message(flush, self.firewalld_version,
                                                 config.felix_refresh_interval, note),
                           cause=flush.cause or "not-firewalld", lost=sorted(flush.lost),
                           owners=list(flush.owners), felix_refresh_s=config.felix_refresh_interval,
                           firewalld_version=self.firewalld_version or None)
        self._on_status()  # STATUS= and the status file say the path is blocked until it is back
