"""`calfwd run`: decides *when* to reconcile; reconcile.py decides *what*.

Triggers: start, firewalld's Reloaded (only from the current owner of its bus name: any
client can emit a fake one), a new owner of that name once its state is RUNNING (firewalld
claims the name before it has applied its rules), a periodic resync (no signal is sent when a
reload fails), SIGHUP. Bursts coalesce: the first trigger runs at once, later ones within
HOLDOFF collapse into one more run, which sees every trigger it stands for (the flush guard is
judged again after a firewalld-started even when a resync came first).

Kernel events (`nft --json monitor`, drivers/nftmonitor.py, filtered by watch/kernel_events.py):
a change to calfwd's own table that calfwd did not make is repaired at once (nftables layer
only, never waiting on firewalld); a change to the chains holding Felix's and kube-proxy's
top-level jumps makes the daemon read those jumps again, and watch/flushes.py turns a loss into
one warning per flush, naming firewalld's start, reload or stop when it was the cause
(firewalld's drop table on the monitor says a reload is in progress). firewalld's own table
vanishing while firewalld runs (a `flush ruleset`) is reported, never touched. Without the
monitor (it failed, or kernel_events = false) the jumps are read after every reconcile and
the resync repairs the table, as in 0.1. Where [firewalld] flush_guard wants the flush guard
the daemon also reports, once, what guard.assess() finds wrong with it (missing, stale, not in
effect...); it never writes it (its file system is read-only): `calfwd guard enable` does.

What shuts a Calico path besides calfwd's objects (judge/blockers.py: panic mode, a binding to a
dropping zone, a policy asked first, forwarding off) is judged at every reconcile and again,
read-only, on firewalld's runtime signals and on a change of the forwarding sysctls (polled
every second: the kernel sends no event), so the verdict follows within about a second.

After every reconcile and every change in what it saw (a flush, its undoing), one verdict
(status/health.py) goes to STATUS= and to /run/calfwd (status.json for `calfwd status`, a one-line
health file for node-problem-detector), rewritten at least every HEARTBEAT seconds so that
their age tells a hung daemon.

Stopping (SIGTERM, SIGINT) leaves every rule in place: pod traffic must not depend on calfwd
running. If the system bus itself goes away calfwd exits non-zero and systemd restarts it: a
fresh connection is simpler and surer than re-subscribing every match rule by hand.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace
from typing import Any, Callable, FrozenSet, List, Optional, Set, Tuple

from calfwd.config import Config, ConfigError, command_problems, load_trusted
from calfwd.judge import guard
from calfwd.status import document, health
from calfwd.judge import pools
from calfwd import drivers
from calfwd.drivers import hostnet, statusfile
from calfwd.events import Reporter
from calfwd.watch import KernelWatch, Watch
from calfwd.status.metrics_file import MetricsFile
from calfwd.status.labels import LabelsFile, facts as label_facts
from calfwd import __version__
from calfwd.reconcile import PATHS, Outcome, Reconciler, firewalld_budget

FIREWALLD = "org.fedoraproject.FirewallD1"
FIREWALLD_PATH = "/org/fedoraproject/FirewallD1"
HOLDOFF = 0.5  # seconds: 100 Reloaded signals in a second cost about three reconciles
STATE_POLL = 0.05  # seconds between state checks while a new firewalld starts up
STATE_WAIT = 120.0  # give up waiting for RUNNING after this long; the resync catches up
EXIT_BUS_LOST = 1
HEARTBEAT = 60  # seconds: the status files are rewritten at least this often
GUARD_EVERY = 300.0  # seconds between judgements of the flush guard (and on these triggers)
GUARD_TRIGGERS = frozenset({"start", "config-reloaded", "firewalld-started"})
# A run that stands for several triggers is labelled (log line, STATUS=, metrics) with the
# first of them in this order. start and config-reloaded lead: reconcile.ORPHAN_TRIGGERS is
# keyed on the label. Unknown names rank just above resync.
SIGNIFICANCE = ("config-reloaded", "start", "firewalld-started", "firewalld-reloaded",
                "felix-pools-changed", "flannel-subnet-changed", "resync")
METRICS_HOLDOFF = 0.25  # seconds: the metrics file is written at most about 4 times a second
# seconds: the most one reconcile (the flush guard's check included) waits on firewalld in
# all, however many calls it makes: a hung firewalld holds the loop this long, once.
FIREWALLD_BUDGET = 5.0

# firewalld's runtime changes that can shut or reopen a Calico path (judge/blockers.py): the verdict
# is judged again on the signal, not at the next resync. Reloaded has its own handler.
RUNTIME_SIGNALS = frozenset({
    "PanicModeEnabled", "PanicModeDisabled", "DefaultZoneChanged", "ZoneUpdated", "PolicyUpdated",
    "InterfaceAdded", "InterfaceRemoved", "ZoneChanged", "ZoneOfInterfaceChanged",
    "SourceAdded", "SourceRemoved", "ZoneOfSourceChanged"})
JUDGE_HOLDOFF = 0.2  # seconds: a script's burst of firewall-cmd calls is judged about once
FORWARDING_POLL = 1.0  # seconds: the kernel sends no event when a sysctl changes (nor for
# flannel's subnet file, looked at in the same poll: one stat())


def label(triggers: FrozenSet[str]) -> str:
    """The name one run goes by: its most significant trigger (SIGNIFICANCE)."""
    unknown = SIGNIFICANCE.index("resync") - 0.5
    return min(triggers, key=lambda t: (SIGNIFICANCE.index(t) if t in SIGNIFICANCE else unknown, t))


class Coalescer:
    """Runs `action` once now and at most once per `holdoff` while requests keep coming.

    A run gets every trigger requested since the one before, not only the first: whatever is
    decided on a trigger's name (the guard's judgement on firewalld-started, READY=1 after
    config-reloaded) must not be lost because another trigger came in the same window."""

    def __init__(self, action: Callable[[FrozenSet[str]], None], holdoff: float, glib: Any,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._action = action
        self._holdoff = holdoff
        self._glib = glib
        self._clock = clock
        self._pending: Set[str] = set()
        self._timer: Optional[int] = None
        self._last = float("-inf")
        self.runs = 0

    def request(self, *triggers: str) -> None:
        self._pending.update(triggers)
        if self._timer is not None or not self._pending:
            return
        wait = max(0.0, self._last + self._holdoff - self._clock())
        self._timer = self._glib.timeout_add(int(wait * 1000), self._fire)

    def _fire(self) -> bool:
        self._timer = None
        triggers, self._pending = frozenset(self._pending), set()
        if triggers:
            self._last = self._clock()
            self.runs += 1
            self._action(triggers)
        return False  # one-shot GLib source


class Daemon:
    def __init__(self, config_path: str, config: Config, bus: Any, reconciler: Reconciler,
                 reporter: Reporter, glib: Any, notify: Callable[[str], None]) -> None:
        self.config_path = config_path
        self.config = config
        self.bus = bus
        self.reconciler = reconciler
        self.reporter = reporter
        self.glib = glib
        self.notify = notify
        self.loop = glib.MainLoop()
        self.owner: Optional[str] = None
        self.exit_code = 0
        self.last: Optional[Outcome] = None
        self.ready = False
        self.coalescer = Coalescer(self._reconcile, HOLDOFF, glib)
        self._resync_timer: Optional[int] = None
        self._state_wait: Optional[int] = None
        self._state_asked: Optional[str] = None
        self._reloading = False  # calfwd's own firewalld reload is in flight
        self._deferred: Set[str] = set()  # the triggers that came meanwhile
        self._hup_ready = False
        self._conflicts: frozenset = frozenset()
        self._failed_owner: Optional[str] = None
        self._guard_problem: Optional[str] = None
        self._guard_verdict: Optional[guard.GuardVerdict] = None
        self._status_file_error: Optional[str] = None
        self._guard_checked = float("-inf")
        self._pid_start = statusfile.process_start(os.getpid())
        self._pools_key: Optional[tuple] = None  # ip_pools = "auto": what was last said
        # The watch wing reads with the nft driver; its repairs are the reconciler's nftables layer.
        self.kernel: Watch = KernelWatch(glib, reporter, reconciler.nft,
                                         lambda config: self.reconciler.reconcile_nft(config),
                                         lambda: self.config, lambda: self.owner, self._notify_status,
                                         on_pools=lambda: self.coalescer.request("felix-pools-changed"))
        self._metrics_due = Coalescer(lambda _why: self.metrics.write(), METRICS_HOLDOFF, glib)
        self._judge_due = Coalescer(self._judge_paths, JUDGE_HOLDOFF, glib)
        self._blocked: Tuple[str, ...] = ()  # what blocks a path, as last said in the journal
        self._forwarding: Optional[dict] = None
        self._subnet_stamp: Optional[tuple] = None  # flannel's subnet file as last seen (auto pools)
        self.metrics = MetricsFile(reporter, lambda: self.config.metrics_textfile,
                                   lambda: self._metrics_due.request("metrics"))
        self.labels = LabelsFile(reporter, lambda: self.config.labels_features_file)

    # -- wiring --------------------------------------------------------------------------

    def start(self) -> None:
        if self.bus is not None:
            # bus_name: the bus itself delivers only what the current owner of firewalld's name
            # sends, so a local user's flood of fake Reloaded never reaches calfwd (it grew the
            # daemon's memory without bound when every one was delivered and dropped here).
            # _on_reloaded still checks the sender: the second line.
            self.bus.add_signal_receiver(
                self._on_reloaded, signal_name="Reloaded", dbus_interface=FIREWALLD,
                bus_name=FIREWALLD, path=FIREWALLD_PATH, sender_keyword="sender")
            # Only the bus daemon itself may tell who owns firewalld's name: any client can send
            # a NameOwnerChanged-shaped signal.
            self.bus.add_signal_receiver(
                self._on_owner_changed, signal_name="NameOwnerChanged", bus_name="org.freedesktop.DBus",
                dbus_interface="org.freedesktop.DBus", path="/org/freedesktop/DBus", arg0=FIREWALLD)
            # firewalld's runtime changes (panic mode, bindings, policies): judged again at once.
            self.bus.add_signal_receiver(
                self._on_firewalld_changed, bus_name=FIREWALLD, path=FIREWALLD_PATH,
                member_keyword="member", sender_keyword="sender")
            self.bus.call_on_disconnection(self._on_disconnected)
            self.owner = self._current_owner()
        for signum, handler in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                                (signal.SIGHUP, self._on_hup)):
            self.glib.unix_signal_add(self.glib.PRIORITY_HIGH, signum, handler, signum)
        self.reporter.emit("started", f"calfwd started (config {self.config_path})",
                           config=self.config_path, firewalld_owner=self.owner or "none")
        self._arm_resync()
        self._arm_watchdog()
        self.glib.timeout_add(HEARTBEAT * 1000, self._heartbeat)
        self.glib.timeout_add(int(FORWARDING_POLL * 1000), self._poll_forwarding)
        if self.config.kernel_events:
            self.kernel.start()
        previous = statusfile.read_previous()  # a flush the last run saw is not undone by a restart
        if previous is not None:
            self.kernel.carry(health.daemon_outages(previous))
        self.kernel.observe()  # before the first reconcile, whose reload may flush them
        # The poll's baseline is read before the first judgement, never after it: a sysctl
        # changed between that judgement and the first poll would otherwise be the baseline,
        # and the verdict would stay "ok" until the next reconcile.
        self._forwarding = self._read_forwarding()
        self._reconcile(frozenset({"start"}))

    def _arm_watchdog(self) -> None:
        """Ping from the main loop itself, so a stuck loop stops pinging and systemd restarts it."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or (pid and pid != str(os.getpid())):
            return
        interval_ms = max(100, int(usec) // 2000)

        def ping() -> bool:
            self.notify("WATCHDOG=1")
            return True
        self.glib.timeout_add(interval_ms, ping)

    def run(self) -> int:
        self.start()
        self.loop.run()
        return self.exit_code

    def _current_owner(self) -> Optional[str]:
        try:
            return str(self.bus.get_name_owner(FIREWALLD))
        except Exception:
            return None

    def _arm_resync(self) -> None:
        if self._resync_timer is not None:
            self.glib.source_remove(self._resync_timer)
        self._resync_timer = self.glib.timeout_add(
            int(self.config.resync_interval * 1000), self._on_resync)

    # -- triggers ------------------------------------------------------------------------

    def _on_reloaded(self, *args: Any, sender: Optional[str] = None) -> None:
        if sender is None or sender != self.owner:
            self.reporter.emit("signal-ignored", "ignored a Reloaded signal that did not come "
                               "from firewalld's current bus name owner", sender=sender)
            return
        self.reporter.emit("firewalld-reloaded", "firewalld reloaded", sender=sender)
        self.kernel.end("reload")
        self.coalescer.request("firewalld-reloaded")

    def _on_firewalld_changed(self, *_args: Any, member: Optional[str] = None,
                              sender: Optional[str] = None) -> None:
        if member in RUNTIME_SIGNALS and sender is not None and sender == self.owner:
            self._judge_due.request(f"firewalld-{member}")

    def _read_forwarding(self) -> Optional[dict]:
        try:
            return hostnet.read_forwarding()
        except OSError:
            return None

    def _poll_forwarding(self) -> bool:
        self._poll_subnet_file()
        now = self._read_forwarding()
        if now is None:
            return True
        if self._forwarding is not None and now != self._forwarding:
            self._judge_due.request("forwarding-changed")
        self._forwarding = now
        return True

    def _subnet_file_stamp(self) -> Optional[tuple]:
        """flannel's subnet file as (inode, mtime, size), ("absent",) when gone; None where the
        pools cannot follow it (not "auto")."""
        if not self.config.auto_pools:
            return None
        try:
            st = os.stat(self.config.flannel_subnet_file)
        except OSError:
            return ("absent",)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _poll_subnet_file(self) -> None:
        """flannel rewrites the file (by rename) when its lease or network changes: on a Canal or
        flannel node the pools follow within a poll, not at the next resync. The baseline is
        taken by each reconcile just before it reads the file (_reconcile), never here: a
        change between that read and a later poll would otherwise become the baseline."""
        if self.last is None or self.last.facts.cni.kind not in ("canal", "flannel"):
            return
        stamp = self._subnet_file_stamp()
        if stamp != self._subnet_stamp:
            self._subnet_stamp = stamp
            self.coalescer.request("flannel-subnet-changed")

    def _judge_paths(self, _triggers: FrozenSet[str]) -> None:
        """A firewalld runtime change or a sysctl: judge the paths again (read only, no apply)
        and publish the verdict now. A reconcile under way judges them itself."""
        if self.last is None or self._reloading:
            return
        try:
            with firewalld_budget(FIREWALLD_BUDGET if self.reconciler.firewalld is not None else None):
                layer = self.reconciler.judge_paths(self.config)
        except Exception:  # firewalld stopping or gone meanwhile: the reconcile its own
            return  # events bring judges and reports it (a firewalld that stops answering too)
        self.last = replace(self.last, layers=tuple(l for l in self.last.layers if l.layer != PATHS) + (layer,))
        self._publish(self.last)

    def _on_owner_changed(self, name: str, old: str, new: str) -> None:
        if name != FIREWALLD:
            return
        self.owner = owner = self._current_owner()  # the bus's word, not the signal's arguments
        if not owner:
            self.reporter.emit("firewalld-vanished", "firewalld left the bus; calfwd's nftables "
                               "table stays in place and calfwd waits for firewalld to return")
            self._cancel_state_wait()
            if self.kernel.busy("start"):
                self.kernel.end("start")
            self.kernel.end("stop", observe=True)  # its exit cleanup has flushed by now
            return
        self._cancel_state_wait()
        self.metrics.firewalld_restarted()
        self.kernel.begin("start")
        started = time.monotonic()
        self._state_wait = self.glib.timeout_add(0, self._poll_state, owner, started)

    def _cancel_state_wait(self) -> None:
        self._state_asked = None  # a reply still on its way is for an owner that is gone
        if self._state_wait is not None:
            self.glib.source_remove(self._state_wait)
            self._state_wait = None

    def _poll_state(self, owner: str, started: float) -> bool:
        """Wait until the new firewalld has applied its rules, never blocking the loop: a
        starting firewalld answers only once it has (state_async's reply comes then)."""
        self._state_wait = None
        if owner != self.owner or self.reconciler.firewalld is None:
            return False
        self._state_asked = owner
        self.reconciler.firewalld.state_async(
            lambda state, error: self._got_state(owner, started, state, error))
        return False

    def _got_state(self, owner: str, started: float, state: Optional[str], error: Any) -> None:
        if owner != self.owner or self._state_asked != owner:
            return
        self._state_asked = None
        waited = time.monotonic() - started
        if state in ("RUNNING", "FAILED") or waited > STATE_WAIT:
            if state == "FAILED":
                self._failed_owner = owner
                self.reporter.emit("firewalld-failed", "firewalld started in state FAILED: its "
                                   "configuration did not load; calfwd keeps its nftables table "
                                   "and retries at every resync", firewalld_state=state)
            else:
                self.reporter.emit("firewalld-appeared", f"firewalld is {state or 'not answering'}"
                                   + (f" ({error})" if error is not None else ""),
                                   firewalld_state=state or "unknown", wait_ms=round(waited * 1000, 1))
            self.kernel.end("start", observe=True)
            self.coalescer.request("firewalld-started")
            return
        self._state_wait = self.glib.timeout_add(int(STATE_POLL * 1000), self._poll_state, owner, started)

    def _on_resync(self) -> bool:
        self.coalescer.request("resync")
        return True

    def _on_hup(self, _signum: int) -> bool:
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={int(time.monotonic() * 1e6)}")
        try:
            config = load_trusted(self.config_path)
        except Exception as exc:  # never let a bad file take the daemon (or its handler) down
            for problem in _problems(exc, self.config_path):
                self.reporter.emit("config-invalid", f"{problem} (keeping the last good configuration)")
            self.notify("READY=1")
            return True
        self.config = config
        self.reporter.emit("config-reloaded", f"configuration reloaded from {self.config_path}")
        self.kernel.configure(config.kernel_events)
        self._arm_resync()
        self._reconcile(frozenset({"config-reloaded"}))  # `systemctl reload` returns once this is applied
        if self._reloading:
            self._hup_ready = True  # READY=1 from the report of the config-reloaded run (_report)
        else:
            self.notify("READY=1")
        return True

    def _on_stop(self, signum: int) -> bool:
        self.reporter.emit("stopping", f"calfwd stopping on signal {signum}; every rule stays in "
                           "place (run 'calfwd cleanup' to remove them)")
        self.notify("STOPPING=1")
        self.kernel.stop()
        try:  # NPD's check says "stopped" rather than the last verdict until someone restarts it
            statusfile.publish_health(f"{health.STOPPED} calfwd stopped (signal {signum}); its rules "
                                      "stay in place, nothing follows firewalld's reloads")
        except OSError:
            pass
        self.loop.quit()
        return False

    def _on_disconnected(self, _conn: Any) -> None:
        self.reporter.emit("reconcile-failed", "lost the system bus; exiting so that systemd "
                           "restarts calfwd (its rules stay in place)")
        self.exit_code = EXIT_BUS_LOST
        self.loop.quit()

    # -- the work ------------------------------------------------------------------------

    def _reconcile(self, triggers: FrozenSet[str]) -> None:
        if self._reloading:
            # firewalld is busy with calfwd's reload and would not answer before it is over:
            # run once more when it is (its Reloaded lands here too), for all of them (a new
            # config's run sends the READY=1 `systemctl reload` waits for).
            self._deferred |= triggers
            return
        trigger = label(triggers)
        wait = FIREWALLD_BUDGET if self.reconciler.firewalld is not None else None
        self._subnet_stamp = self._subnet_file_stamp()  # before the reconcile reads the file
        with firewalld_budget(wait):  # the reconcile and what _report asks firewalld, together
            outcome = self.reconciler.reconcile(self.config, trigger, budget=wait,
                                                reload_later=lambda done: self._reload_done(done, triggers))
            if outcome.pending_reload:
                self._reloading = True
                # A flush report may come before the reload is over: it names the version.
                self.kernel.track_version(outcome.facts.firewalld_version)
                self.notify(f"STATUS=applying: firewalld reloading (after {trigger})")
                return
            self._report(outcome, triggers)

    def _reload_done(self, outcome: Outcome, triggers: FrozenSet[str]) -> None:
        self._reloading = False
        deferred, self._deferred = self._deferred, set()
        try:
            self._report(outcome, triggers)
        finally:
            if deferred:
                self.coalescer.request(*deferred)

    def _report(self, outcome: Outcome, triggers: FrozenSet[str]) -> None:
        """triggers: every one this run stands for; outcome.trigger is their label."""
        trigger = outcome.trigger
        self.last = outcome
        self.metrics.reconciled(outcome)
        ms = round(outcome.duration * 1000, 2)
        common = dict(trigger=trigger, duration_ms=ms, nft_duration_ms=round(outcome.nft_duration * 1000, 2),
                      changes=outcome.changes, firewalld_version=outcome.facts.firewalld_version or None)
        for conflict in outcome.conflicts:
            if conflict not in self._conflicts:  # said once when it appears, not every resync
                self.reporter.emit("conflict", conflict, trigger=trigger)
        self._conflicts = frozenset(outcome.conflicts)
        if outcome.errors:
            for error in outcome.errors:
                self.reporter.emit("reconcile-failed", f"reconcile after {trigger} failed: {error}", **common)
        elif outcome.changes or trigger != "resync":
            actions = "; ".join(a for layer in outcome.layers for a in layer.actions)
            state = "verified" if outcome.verified else "NOT verified"
            self.reporter.emit("reconciled", f"reconciled after {trigger} in {ms} ms, "
                               f"{outcome.changes} change(s), {state}" + (f": {actions}" if actions else ""),
                               verified=outcome.verified, **common)
        self._check_pools(outcome)
        self._check_failed(outcome)
        self.kernel.reconciled(triggers, outcome.facts.firewalld_version)
        self._check_guard(triggers)
        self._label()
        self._publish(outcome)
        hup_done = self._hup_ready and "config-reloaded" in triggers
        if not self.ready or hup_done:
            self.ready = True
            self._hup_ready = self._hup_ready and not hup_done
            self.notify("READY=1")

    def _check_pools(self, outcome: Outcome) -> None:
        """ip_pools = "auto": say once when the pools change, and once when none can be known."""
        state = outcome.pools
        event = pools.event_for(state, self._pools_key) if state is not None else None
        if state is None or event is None:
            return
        self._pools_key = state.key()
        if event == "pools-unknown":
            self.reporter.emit("pools-unknown", f"pools: {state.describe()}", problem=state.problem,
                               pools=[n.with_prefixlen for n in state.pools] or None)
        else:
            self.reporter.emit("pools-changed", f"pools: {state.describe()}",
                               pools=[n.with_prefixlen for n in state.pools],
                               nat_outgoing=[n.with_prefixlen for n in state.masq], source=state.source)

    def _check_failed(self, outcome: Outcome) -> None:
        """firewalld owns its name but is not RUNNING: say so once, whoever started first."""
        if outcome.facts.firewalld_running or not self.owner or self.reconciler.firewalld is None:
            return
        if self._failed_owner != self.owner and outcome.facts.firewalld_state == "FAILED":
            self._failed_owner = self.owner
            self.reporter.emit("firewalld-failed", "firewalld is in state FAILED: its configuration "
                               "did not load; calfwd keeps its nftables table and retries at every "
                               "resync", firewalld_state="FAILED")

    def _check_guard(self, triggers: FrozenSet[str]) -> None:
        """The flush guard: say once when it is wanted and missing, stale or not in effect.

        guard.assess(), the verdict doctor and `calfwd guard status` give (it needs
        firewalld's facts: its code, backend, direct rules, its mounts), at start, SIGHUP, a
        new firewalld and every GUARD_EVERY seconds. Watched with flush_guard = true, and with
        "auto" while calfwd manages a running firewalld; judged also for the metrics' gauge."""
        setting = self.config.firewalld.flush_guard
        watch = setting is True or (setting == "auto" and self.config.firewalld.enabled and bool(self.owner))
        now = time.monotonic()
        due = bool(triggers & GUARD_TRIGGERS) or now - self._guard_checked >= GUARD_EVERY
        if due and (watch or self.config.metrics_textfile or self.config.labels_features_file):
            self._guard_checked = now
            self._guard_verdict = judge_guard(self.config_path, setting)
            self.metrics.guard(self._guard_verdict)
        verdict = self._guard_verdict if watch else None
        problem = verdict.problem if verdict is not None else None
        if problem and problem != self._guard_problem:
            self.reporter.emit("conflict", problem)
        self._guard_problem = problem

    def _label(self) -> None:
        """[labels] features_file (status/labels.py): stable facts, rewritten when one changes."""
        if not self.config.labels_features_file or self.last is None:
            return
        facts = self.last.facts
        guard_state = self._guard_verdict.state if self._guard_verdict is not None else ""
        self.labels.update(label_facts(__version__, facts.cni.kind, facts.firewalld_version,
                                       facts.firewalld_backend, guard_state))

    def _notify_status(self) -> None:
        if self.last is not None:
            self._publish(self.last)

    def _publish(self, outcome: Outcome) -> None:
        """One verdict (status/health.py) for STATUS=, /run/calfwd and node-problem-detector."""
        pools_problem = outcome.pools.problem if self.config.auto_pools and outcome.pools is not None else None
        verdict = health.assess(outcome, self.kernel.outages(), self._guard_problem,
                                self.kernel.firewalld_table_missing, pools_problem,
                                kernel_blocking=self.kernel.blocking())
        self._say_blocked(outcome, verdict)
        self.metrics.verdict(verdict.state, [o.owner for o in verdict.outages])
        nets = self.config.ip_pools
        shown = ",".join(n.with_prefixlen for n in nets)
        if self.config.auto_pools:  # what this reconcile used, read from Felix's sets
            nets = outcome.pools.pools if outcome.pools is not None else ()
            shown = outcome.pools.describe() if outcome.pools is not None else "auto"
        zone = self.config.firewalld.zone
        self.notify(health.status_line(verdict, outcome, zone, shown, time.strftime("%H:%M:%S")))
        try:
            doc = document.daemon(verdict, outcome, pid=os.getpid(), updated=time.time(),
                                  config_path=self.config_path, zone=zone,
                                  pools=[n.with_prefixlen for n in nets],
                                  following_kernel=self.kernel.following_kernel,
                                  pid_start=self._pid_start)
            statusfile.publish(doc, health.health_line(verdict))
            self._status_file_error = None
        except Exception as exc:  # never the heartbeat's end: a GLib source that raises is gone
            problem = f"{statusfile.run_dir()}: {getattr(exc, 'strerror', None) or exc}"
            if problem != self._status_file_error:  # once, not at every reconcile
                self.reporter.emit("status-file-failed", f"cannot write calfwd's status files: {problem}; "
                                   "`calfwd status` and node-problem-detector's check do not see "
                                   "the daemon's view until this is fixed")
            self._status_file_error = problem

    def _say_blocked(self, outcome: Outcome, verdict: Any) -> None:
        """Each thing that blocks a path, once when it appears and once when it is gone."""
        now = tuple(b for layer in outcome.layers if layer.layer == PATHS for b in layer.blocking) + \
            verdict.kernel_blocking
        for line in now:
            if line not in self._blocked:
                self.reporter.emit("path-blocked", f"BLOCKED: {line}", what=line, trigger=outcome.trigger)
        for line in self._blocked:
            if line not in now:
                self.reporter.emit("path-unblocked", f"no longer blocked: {line}", what=line,
                                   trigger=outcome.trigger)
        self._blocked = now

    def _heartbeat(self) -> bool:
        """The status files' age is how NPD's check knows the daemon still runs."""
        try:
            self._notify_status()
        except Exception as exc:  # keep beating: a GLib source that raises is removed
            self.reporter.emit("status-file-failed", f"updating calfwd's status failed: "
                               f"{type(exc).__name__}: {exc}")
        return True


def judge_guard(config_path: str, setting: Any) -> Optional[guard.GuardVerdict]:
    """guard.assess() on this host, read as doctor reads it; None when the read itself failed
    (doctor says why): the daemon keeps reconciling."""
    from calfwd.doctor.findings import guard_verdict
    from calfwd.doctor.reads import read_snapshot

    try:
        return guard_verdict(read_snapshot(config_path, full=False), setting)
    except Exception:
        return None


def _problems(exc: Exception, path: str) -> List[str]:
    if isinstance(exc, ConfigError):
        return exc.problems
    return [f"{path}: cannot load: {type(exc).__name__}: {exc}"]


def _notifier() -> Callable[[str], None]:
    try:
        from systemd import daemon as sd_daemon
    except ImportError:
        return lambda _state: None
    return lambda state: sd_daemon.notify(state)


def run(config_path: str) -> int:
    """Entry point of `calfwd run`; returns the process exit code."""
    import dbus
    from dbus.mainloop.glib import DBusGMainLoop
    from gi.repository import GLib

    reporter = Reporter()
    try:
        config = load_trusted(config_path, check_program=False)
    except Exception as exc:
        for problem in _problems(exc, config_path):
            reporter.emit("config-invalid", problem)
        return 2
    for problem in command_problems(config):  # not fatal: checked again before every run
        reporter.emit("flush-command-failed", f"{problem}; on_calico_flush will not run until it is fixed")

    DBusGMainLoop(set_as_default=True)
    bus = None
    firewalld = None
    if config.firewalld.enabled:
        try:
            bus = drivers.system_bus()
            bus.set_exit_on_disconnect(False)
            firewalld = drivers.firewalld_driver(bus)
        except dbus.exceptions.DBusException as exc:
            # Keep pod egress working now, then let systemd retry until the bus is back: a
            # fresh start wires every signal, which a half-started daemon would have to redo.
            outcome = Reconciler(drivers.nft_driver()).reconcile(config, "start")
            reporter.emit("reconcile-failed", f"no system bus ({exc.get_dbus_message()}); applied the "
                          "nftables layer" + (f" ({outcome.errors[0]})" if outcome.errors else "")
                          + f"; exiting {EXIT_BUS_LOST} so that systemd retries")
            return EXIT_BUS_LOST
    daemon = Daemon(config_path, config, bus, Reconciler(drivers.nft_driver(), firewalld), reporter, GLib,
                    _notifier())
    return daemon.run()
