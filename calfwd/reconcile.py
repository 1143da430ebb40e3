"""One reconcile: read each layer, plan the difference, apply it, read again to verify.

The daemon decides *when* this runs; the CLI's plan/apply/status are single calls (commands/).
The nftables layer never depends on firewalld being there: pod egress must keep working
while firewalld is down, restarting or misconfigured.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass, field, replace
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple

from calfwd.judge import blockers
from calfwd.judge import cni, flannel
from calfwd.config import Config
from calfwd.desired import Desired, FirewalldDesired, HostFacts, desired
from calfwd.drivers import FirewalldDriver, NftDriver
from calfwd.drivers import budget as budgets
from calfwd.judge.exposure import HostNetwork, withheld_sources
from calfwd.plan.firewalld import online as fw_plan
from calfwd.judge import rendered
from calfwd.plan import nftables as nft_plan
from calfwd.judge import pools as felix_pools
from calfwd.judge.pools import FelixSets, PoolState
from calfwd.config.schema import IPNetwork, WIREGUARD_DEVICES

# Calico's encapsulation devices: traffic between nodes through them arrives in calfwd's zone.
TUNNEL_DEVICES = ("tunl0", "vxlan.calico", "vxlan-v6.calico") + tuple(WIREGUARD_DEVICES)
# The third layer: nothing to apply, only what shuts a Calico path from outside calfwd's objects
# (judge/blockers.py). It never counts against "verified" (calfwd's objects are as configured), only
# against the verdict: a path can be shut while everything of calfwd's is in place.
PATHS = "paths"
# flannel's subnet file, its masquerade rules, and where calfwd looked (judge/flannel.resolve).
FlannelReads = Tuple[Optional[flannel.FlannelNetwork], Optional[flannel.FlannelNetwork], str]


@dataclass(frozen=True)
class LayerPlan:
    """One layer's plan in a form the CLI and the journal can print."""

    layer: str
    actions: Tuple[str, ...]
    conflicts: Tuple[str, ...] = ()
    note: str = ""  # why the layer was skipped, e.g. "firewalld is not running"
    plan: Any = None
    error: str = ""  # the layer could not be read: never "in sync"
    # Conflicts that keep calfwd's own objects from being in place (its table is someone
    # else's): never "in sync" either. Other conflicts are reported and left to the admin.
    blocking: Tuple[str, ...] = ()
    # What the plan was made from (nft's listing of calfwd's table, or FirewalldActual): the
    # audit shows it without a second read that could disagree with the plan.
    read: Any = field(default=None, compare=False, repr=False)

    @property
    def empty(self) -> bool:
        return not self.actions

    @property
    def in_sync(self) -> bool:
        """Nothing to do, nothing unreadable, nothing calfwd was kept from making."""
        return self.empty and not self.error and not self.blocking


@dataclass(frozen=True)
class Outcome:
    trigger: str
    layers: Tuple[LayerPlan, ...]
    errors: Tuple[str, ...]
    verified: bool
    duration: float
    nft_duration: float
    facts: HostFacts = field(default_factory=HostFacts)
    # firewalld reloads in the background (the daemon's loop stays free); the outcome is
    # final, and verified, once it has (Reconciler.reload_later).
    pending_reload: bool = False
    pools: Optional[PoolState] = None  # ip_pools = "auto": what this reconcile used

    @property
    def changes(self) -> int:
        return sum(len(layer.actions) for layer in self.layers)

    @property
    def conflicts(self) -> Tuple[str, ...]:
        return tuple(c for layer in self.layers for c in layer.conflicts)


# Concurrent writers (the daemon and `calfwd apply`, or several applies at once) race to create
# the same zone or policy; firewalld answers the loser NAME_CONFLICT. Re-planning settles it.
RACE_ATTEMPTS = 3
ORPHAN_TRIGGERS = frozenset({"start", "config-reloaded", "cli", "manual"})
STRICT_FORWARD_PORTS = ("firewalld has StrictForwardPorts=yes: it rejects every connection whose destination "
                        "someone else NATed (ClusterIP, NodePort, hostPort) before any zone or policy is asked, "
                        "so every Service path is shut whatever calfwd allows. Set StrictForwardPorts=no in "
                        "firewalld.conf and restart firewalld")


class Reconciler:
    """Holds the drivers (one libnftables context, one firewalld client) for the process."""

    def __init__(self, nft: NftDriver, firewalld: Optional[FirewalldDriver] = None,
                 clock: Callable[[], float] = time.monotonic,
                 links: Callable[[], Sequence[str]] = lambda: _link_names(),
                 felix_sets: Optional[Callable[[], FelixSets]] = None,
                 host_network: Optional[Callable[[], HostNetwork]] = None,
                 forwarding: Optional[Callable[[], Dict[str, str]]] = None,
                 cni_facts: Optional[Callable[[Config], cni.CniFacts]] = None,
                 flannel_reads: Optional[Callable[[Config], FlannelReads]] = None) -> None:
        self.nft = nft
        self.firewalld = firewalld
        self._clock = clock
        self._links = links  # the host's interface names (one netlink dump, no subprocess)
        self._felix_sets = felix_sets or self._read_felix_sets
        self.pools: Optional[PoolState] = None  # ip_pools = "auto": the last pools resolved
        self._host_network = host_network or _read_addresses
        self._forwarding = forwarding or _read_forwarding
        self._cni_facts = cni_facts or self._read_cni_facts
        self._flannel_reads = flannel_reads or self._read_flannel
        self.cni = cni.CniVerdict()  # the last verdict judge_cni() gave
        self._judging = False  # inside one_judgement(): judge_cni() reads the node once
        self._judged: Optional[cni.CniVerdict] = None
        # ip_pools = "auto" with trust_pool_sources: pools kept out of the zone's sources, and
        # why (conflicts of the firewalld layer, said once by the daemon).
        self._withheld: Tuple[IPNetwork, ...] = ()
        self.withheld_lines: Tuple[str, ...] = ()

    def _read_felix_sets(self) -> FelixSets:
        from calfwd.drivers import felixsets
        return felixsets.read(self.nft)

    def resolve_pools(self, config: Config) -> PoolState:
        """The pools read now: flannel's network on a Canal or flannel node (judge/flannel.py),
        Felix's sets elsewhere. A failed read keeps the pools known before: read by this
        process, else those in calfwd's own table (pools.unreadable, pools.applied)."""
        last = self.pools if self.pools is not None and self.pools.known else self._applied(config)
        if self._serves_flannel(config):
            subnet_file, rules, looked = self._flannel_reads(config)
            state = flannel.resolve(subnet_file, rules, last, looked)
        else:
            try:
                state = felix_pools.resolve(self._felix_sets(), last)
            except Exception as exc:  # driver errors carry a one-line message
                state = felix_pools.unreadable(str(exc), last)
        self.pools = state
        return state

    def _serves_flannel(self, config: Config) -> bool:
        """Canal and flannel nodes: flannel masquerades pod egress and knows the pod network."""
        try:
            return self.judge_cni(config).kind in ("canal", "flannel")
        except Exception:  # the links unreadable: served as Calico, as judge() does
            return False

    def _read_flannel(self, config: Config) -> FlannelReads:
        """flannel's subnet file (None when absent) and its masquerade rules (None when they
        cannot be read), each failure as a problem judge/flannel.py keeps the last pools for."""
        from calfwd.drivers import flannel as flannel_files
        path = config.flannel_subnet_file
        subnet_file: Optional[flannel.FlannelNetwork] = None
        try:
            text = flannel_files.read_subnet_file(path)
            if text is not None:
                subnet_file = flannel.parse_subnet_file(text, path)
        except OSError as exc:
            subnet_file = flannel.FlannelNetwork(flannel.subnet_file_source(path), problem=f"{path}: {exc}")
        try:
            rules: Optional[flannel.FlannelNetwork] = flannel.from_rules(self.nft.read_chains(flannel.RULE_CHAINS))
        except Exception as exc:  # drivers/nftables.py: one line
            rules = flannel.FlannelNetwork("flannel's rules", problem=f"cannot read flannel's rules ({exc})")
        looked = (f"no subnet file at {path}; no masquerade rule of flannel's in iptables' nat tables "
                  "(FLANNEL-POSTRTG) or flannel's nftables tables")
        return subnet_file, rules, looked

    def _applied(self, config: Config) -> Optional[PoolState]:
        d = desired(config, HostFacts()).nft
        try:
            objs = self.nft.read_table(d.family, d.table)
        except Exception:
            return None
        return felix_pools.applied(objs) if objs and nft_plan.owned(objs) else None

    def resolve(self, config: Config) -> Config:
        """ip_pools = "auto": Felix's pools put into the config, so desired() stays pure."""
        if not config.auto_pools:
            self.withheld_lines = ()
            return config
        return self._withhold(self.resolve_config(config, self.resolve_pools(config)))

    def _withhold(self, config: Config) -> Config:
        """Felix's pools holding one of the node's addresses never become trusted sources. A
        host that cannot be read keeps what was withheld before, and says so."""
        fw = config.firewalld
        if not (fw.enabled and fw.trust_pool_sources and config.ip_pools):
            self.withheld_lines = ()  # no trusted pool source: nothing to read the host for
            return config
        try:
            self._withheld, self.withheld_lines = withheld_sources(config, self._host_network())
        except Exception as exc:  # drivers/hostnet.py: one line
            self.withheld_lines = (f"cannot compare Felix's pools with this host's addresses ({exc}); "
                                   f"a pool holding one of them would be a trusted source of zone '{fw.zone}'",)
        return replace(config, withheld_sources=self._withheld)

    @staticmethod
    def resolve_config(config: Config, state: PoolState) -> Config:
        return replace(config, ip_pools=state.pools, nat_outgoing=state.masq)

    # -- reading -----------------------------------------------------------------------

    def facts(self, config: Optional[Config] = None) -> HostFacts:
        """firewalld's facts, the WireGuard devices and, given the config, which CNI is served."""
        facts = HostFacts() if self.firewalld is None else self.firewalld.facts()
        present = set(self._links())
        facts = replace(facts, wireguard_devices=tuple(d for d in WIREGUARD_DEVICES if d in present))
        return facts if config is None else replace(facts, cni=self.judge_cni(config))

    def judge_cni(self, config: Config) -> cni.CniVerdict:
        """judge/cni.py's verdict on this node now (or the configured kind, with its backend);
        kept as self.cni for the repair path. Inside one_judgement(), the first verdict serves."""
        if self._judging and self._judged is not None:
            return self._judged
        self.cni = cni.judge(self._cni_facts(config), config.cni_kind)
        if self._judging:
            self._judged = self.cni
        return self.cni

    @contextlib.contextmanager
    def one_judgement(self) -> Iterator[None]:
        """One plan or reconcile reads the node's signs of its CNI once: the pools, the facts
        and the read-back after applying then agree, and `ip -d -j link` runs once, not twice."""
        if self._judging:
            yield
            return
        self._judging = True
        try:
            yield
        finally:
            self._judging, self._judged = False, None

    def _facts_without_firewalld(self, config: Config) -> HostFacts:
        """firewalld could not be read: still say which CNI is served (the nft layer needs none)."""
        try:
            return HostFacts(cni=self.judge_cni(config))
        except Exception:
            return HostFacts()


    def _read_cni_facts(self, config: Config) -> cni.CniFacts:
        """The node's signs of its CNI, read only as far as the judgement needs them: the link
        names always (one netlink dump); `ip -d -j link` only where a flannel device or one of
        Calico's tunnels exists (their ports and state); BIRD's routes only beside a flannel
        device; Felix's rules only when no cali* interface already shows Calico, and its ip sets
        (which outlive a firewalld flush of its chains, so Canal is not taken for flannel
        meanwhile) only beside a flannel device."""
        names = tuple(self._links())
        links: Tuple[cni.Link, ...] = tuple(cni.Link(n) for n in names)
        error = ""
        flannel = any(cni.is_flannel_device(n) for n in names)
        if flannel or set(names) & set(cni.CALICO_TUNNELS):
            try:
                links = _read_links()
            except Exception as exc:  # drivers/hostnet.py: one line
                error = str(exc)
        bird = False
        if flannel:
            try:
                bird = _read_bird_routes()
            except Exception:
                bird = False  # unread: Calico's BGP port stays shut on Canal (the common case)
        felix: Optional[bool] = True
        if not any(cni.is_calico_workload(n) for n in names):
            felix = self._felix_present(ip_sets=flannel)
        path = config.flannel_subnet_file
        return cni.CniFacts(links=links, felix=felix, subnet_file=path, subnet_file_exists=os.path.isfile(path),
                            bird_routes=bird, error=error)

    def _felix_present(self, ip_sets: bool) -> Optional[bool]:
        from calfwd.drivers import felixsets
        return felixsets.present(self.nft, ip_sets)

    def desired(self, config: Config) -> Tuple[Desired, HostFacts]:
        """config: resolved already (resolve()), so a firewalld failure here cannot lose the pools."""
        facts = self.facts(config)
        return desired(config, facts), facts

    def plan_nft(self, want: Desired, orphans: bool = True) -> LayerPlan:
        """orphans: also find tables calfwd made under an earlier name (by its mark), to remove."""
        d = want.nft
        found = nft_orphans(self.nft, d.family, d.table) if orphans else ()
        listing = self.nft.read_table(d.family, d.table)
        p = nft_plan.plan(d, listing, found)
        return LayerPlan("nftables", p.reasons, p.conflicts, plan=p, blocking=p.conflicts, read=listing)

    def plan_firewalld(self, want: Desired, facts: HostFacts) -> LayerPlan:
        if want.firewalld is None:
            return LayerPlan("firewalld", (), note="disabled in the config ([firewalld] enabled = false)")
        firewalld = self.firewalld
        if firewalld is None or not facts.firewalld_running:
            if facts.firewalld_state:  # it owns its name but is not RUNNING
                why = (f"firewalld is in state {facts.firewalld_state}"
                       + (": its configuration did not load (see its log); calfwd retries at every "
                          "resync" if facts.firewalld_state == "FAILED" else ""))
                return LayerPlan("firewalld", (), note=why, blocking=(why,))
            return LayerPlan("firewalld", (), note="firewalld is not running; nothing to do until it starts")
        actual = firewalld.read(want.firewalld)
        p = fw_plan.plan(want.firewalld, actual)
        blocking = tuple(p.blocking)
        if facts.strict_forward_ports:
            blocking += (STRICT_FORWARD_PORTS,)
        blocking += tuple(self._rendering_problems(want.firewalld, facts, actual, firewalld))
        return LayerPlan("firewalld", tuple(op.description for op in p.ops),
                         tuple(p.conflicts) + blocking[len(p.blocking):] + self.withheld_lines,
                         plan=p, blocking=blocking, read=actual)

    def _rendering_problems(self, want: FirewalldDesired, facts: HostFacts, actual: Any,
                            firewalld: FirewalldDriver) -> List[str]:
        """Read back (read-only) what firewalld rendered: its forward-policy dispatch. On 0.9.x
        it matters only for routed traffic into pods (no tunnel device) from a zone whose target
        drops: only then are the chains and those zones' targets read."""
        version = facts.firewalld_version
        dropping: Tuple[str, ...] = ()
        if rendered.zone_targets_matter(version):
            if set(self._links()) & set(TUNNEL_DEVICES):
                return []  # traffic between nodes comes through calfwd's zone
            zones = (set(actual.active_zones) | {facts.default_zone}) - {want.zone.name}
            try:
                dropping = tuple(sorted(z for z in zones if z and firewalld.runtime_zone_target(z)
                                        in rendered.DROPPING_TARGETS))
            except Exception:
                return []  # the firewalld layer's own read reports a firewalld that does not answer
            if not dropping:
                return []
        try:
            chains = self.nft.read_chains(rendered.DISPATCH_CHAINS)
        except Exception:
            return []  # the iptables backend, or no firewalld table: nothing rendered there
        return rendered.rendering_problems(chains, version, want.policies[0].name, dropping)

    def plan(self, config: Config, orphans: bool = True,
             resolved: bool = False) -> Tuple[Tuple[LayerPlan, ...], HostFacts]:
        """Both layers; a layer that cannot be read says why (LayerPlan.error) instead of
        hiding the other one. nftables errors propagate: without its table calfwd knows nothing.
        resolved: config carries Felix's pools already (the read-back after applying them)."""
        with self.one_judgement():
            return self._plan(config, orphans, resolved)

    def _plan(self, config: Config, orphans: bool,
              resolved: bool) -> Tuple[Tuple[LayerPlan, ...], HostFacts]:
        config = config if resolved else self.resolve(config)
        try:
            want, facts = self.desired(config)
        except Exception as exc:
            facts = self._facts_without_firewalld(config)
            want = desired(config, facts)
            return (self.plan_nft(want, orphans), LayerPlan("firewalld", (), error=str(exc)),
                    self.plan_paths(config, want, facts)), facts
        try:
            fw = self.plan_firewalld(want, facts)
        except Exception as exc:
            fw = LayerPlan("firewalld", (), error=str(exc))
        return (self.plan_nft(want, orphans), fw, self.plan_paths(config, want, facts)), facts

    def plan_paths(self, config: Config, want: Desired, facts: HostFacts) -> LayerPlan:
        """What shuts a Calico path now besides calfwd's objects (judge/blockers.py). config: resolved.
        A firewalld that cannot be read here is the firewalld layer's error already."""
        fw_paths, note = None, ""
        fw = want.firewalld
        links = tuple(self._links())
        # The zone's interfaces: calico.interfaces on Calico, flannel's devices too on Canal.
        interfaces = fw.zone.interfaces if fw is not None else config.interfaces
        if fw is not None and self.firewalld is not None and facts.firewalld_running:
            try:
                fw_paths = self.firewalld.read_paths()
            except Exception as exc:
                note = f"firewalld's runtime not judged: {exc}"
            if fw_paths is not None:
                fw_paths = with_dispatch(self.nft, fw_paths, facts.firewalld_backend, fw.zone.name,
                                         interfaces, links)
        try:
            forwarding = self._forwarding()
        except OSError as exc:
            forwarding, note = {}, note or f"forwarding not judged: {exc}"
        found = blockers.judge(
            blockers.PathFacts(fw_paths, forwarding, links),
            zone=fw.zone.name if fw is not None else config.firewalld.zone, interfaces=interfaces,
            pools=config.ip_pools, policies=fw.policies if fw is not None else (),
            host_zone=next((p.ingress_zones[0] for p in fw.policies if "HOST" in p.egress_zones), "")
            if fw is not None else "")
        return LayerPlan(PATHS, (), tuple(b.line() for b in found if not b.blocked), note=note, plan=found,
                         blocking=tuple(b.line() for b in found if b.blocked))

    # -- changing ----------------------------------------------------------------------

    def reconcile(self, config: Config, trigger: str = "manual",
                  reload_later: Optional[Callable[[Outcome], None]] = None,
                  budget: Optional[float] = None) -> Outcome:
        """Apply both layers; an error in one never stops the other.

        reload_later (the daemon): a plan that ends in a firewalld reload sends it without
        waiting; the returned Outcome has pending_reload set, and reload_later(final outcome)
        runs on the caller's main loop when firewalld has answered (verified then).
        budget: the most, in seconds, that all the blocking firewalld calls of this run wait
        together (drivers/firewalld.budget); the verification after the reload, and
        reload_later, get one of their own.
        """
        with firewalld_budget(budget), self.one_judgement():
            return self._reconcile(config, trigger, reload_later, budget)

    def _reconcile(self, config: Config, trigger: str, reload_later: Optional[Callable[[Outcome], None]],
                   budget: Optional[float]) -> Outcome:
        start = self._clock()
        errors: List[str] = []
        layers: List[LayerPlan] = []
        config = self.resolve(config)
        used = self.pools if config.auto_pools else None
        want, facts = self._desired_or_error(config, errors)

        nft_start = self._clock()
        try:
            # Tables made under an earlier name appear only when the config changes: look for
            # them then (and at start), not at every reload and resync.
            layer = self.plan_nft(want, orphans=trigger in ORPHAN_TRIGGERS)
            if not layer.empty:
                self.nft.run(layer.plan.batch)
            layers.append(layer)
        except Exception as exc:  # driver errors carry a one-line message
            errors.append(f"nftables: {exc}")
        nft_duration = self._clock() - nft_start

        pending = False
        for attempt in range(1, RACE_ATTEMPTS + 1):
            try:
                layer = self.plan_firewalld(want, facts)
                firewalld = self.firewalld  # not None: a layer with changes was planned with it
                if not layer.empty and firewalld is not None:
                    if reload_later is not None and _ends_in_reload(layer.plan):
                        firewalld.apply(replace(layer.plan, ops=layer.plan.ops[:-1]))
                        pending = True
                    else:
                        firewalld.apply(layer.plan)
                layers.append(layer)
            except Exception as exc:
                if getattr(exc, "code", "") == "NAME_CONFLICT" and attempt < RACE_ATTEMPTS:
                    # Another calfwd (a concurrent `calfwd apply`) created it between our read
                    # and our write: read again and plan from what is there now.
                    continue
                errors.append(f"firewalld: {exc}")
            break

        layers.append(self._paths_or_error(config, want, facts, errors))
        if pending:
            outcome = Outcome(trigger, tuple(layers), tuple(errors), False, self._clock() - start,
                              nft_duration, facts, pending_reload=True, pools=used)
            try:
                self._reload_then_verify(config, outcome, start, reload_later, budget)  # type: ignore[arg-type]
                return outcome
            except Exception as exc:  # not even sent (the bus is gone): the outcome is final now
                errors.append(f"firewalld: {exc}")
        # The read that planned nothing already is the verification; re-read only after a change.
        # calfwd's table being someone else's is never verified: natOutgoing is not in place.
        changed = any(not layer.empty for layer in layers)
        blocked = any(layer.blocking for layer in layers if layer.layer != PATHS)
        verified = not errors and not blocked
        if verified and changed:
            verified, found = self._verify(config)
            layers = list(_with_blocking(layers, found))
        return Outcome(trigger, tuple(layers), tuple(errors), verified, self._clock() - start,
                       nft_duration, facts, pools=used)

    def _reload_then_verify(self, config: Config, outcome: Outcome, start: float,
                            done: Callable[[Outcome], None], budget: Optional[float]) -> None:
        def reloaded(error: Optional[Exception]) -> None:
            with firewalld_budget(budget):  # a later turn of the caller's loop: a wait of its own
                errors = outcome.errors + ((f"firewalld: {error}",) if error is not None else ())
                blocked = any(layer.blocking for layer in outcome.layers if layer.layer != PATHS)
                verified, found = (False, {}) if errors or blocked else self._verify(config)
                done(replace(outcome, layers=_with_blocking(outcome.layers, found), errors=errors,
                             verified=verified, duration=self._clock() - start, pending_reload=False))
        # Raises when the call cannot even be sent: the caller then has the final outcome.
        self.firewalld.reload_async(reloaded)  # type: ignore[union-attr]

    def reconcile_nft(self, config: Config) -> Tuple[LayerPlan, Tuple[str, ...], float]:
        """Only calfwd's own table: the repair path for kernel events, which must be fast and
        never wait on firewalld. Reads and plans first, so calfwd's own writes (seen again on
        the monitor) plan nothing and cause no second write."""
        start = self._clock()
        if config.auto_pools and self.pools is not None:
            config = self.resolve_config(config, self.pools)  # the last read: this path must be fast
        else:
            config = self.resolve(config)
        try:
            # The CNI judged last: the repair path reads no links, and must render the table the
            # reconcile wrote (flannel's masquerade on Canal), not flip it to Calico's shape.
            layer = self.plan_nft(desired(config, HostFacts(cni=self.cni)), orphans=False)
            if not layer.empty:
                self.nft.run(layer.plan.batch)
            return layer, (), self._clock() - start
        except Exception as exc:
            return LayerPlan("nftables", ()), (f"nftables: {exc}",), self._clock() - start

    def _paths_or_error(self, config: Config, want: Desired, facts: HostFacts, errors: List[str]) -> LayerPlan:
        try:
            return self.plan_paths(config, want, facts)
        except Exception as exc:  # a bug in judging must not cost the reconcile
            errors.append(f"paths: {exc}")
            return LayerPlan(PATHS, (), error=str(exc))

    def judge_paths(self, config: Config) -> LayerPlan:
        """The daemon's re-judgement on a firewalld or sysctl change: no apply, no Felix read
        (the pools of the last reconcile), one firewalld facts read."""
        if config.auto_pools and self.pools is not None:
            config = self.resolve_config(config, self.pools)
        want, facts = self.desired(config)
        return self.plan_paths(config, want, facts)

    def _desired_or_error(self, config: Config, errors: List[str]) -> Tuple[Desired, HostFacts]:
        try:
            return self.desired(config)
        except Exception as exc:
            errors.append(f"firewalld: cannot read its state: {exc}")
            facts = self._facts_without_firewalld(config)
            return desired(config, facts), facts

    def _verify(self, config: Config) -> Tuple[bool, Dict[str, Tuple[str, ...]]]:
        """Read everything back: verified means a fresh plan has nothing left to do. Also what
        blocks a path only once calfwd's objects exist (firewalld's rendering of them)."""
        try:
            layers, _facts = self.plan(config, orphans=False, resolved=True)  # the pools just applied
        except Exception:
            return False, {}
        return (all(layer.in_sync for layer in layers if layer.layer != PATHS),
                {l.layer: l.blocking for l in layers if l.blocking})


def _link_names() -> List[str]:
    return [name for _i, name in socket.if_nameindex()]


def with_dispatch(nft: NftDriver, paths: blockers.FirewalldPaths, backend: str, zone: str,
                  interfaces: Sequence[str], links: Sequence[str]) -> blockers.FirewalldPaths:
    """Where another zone binds one of Calico's interfaces, which binding firewalld asks first,
    as it rendered them (nftables backend; unread, any binding may win: blockers._judged_by)."""
    if backend != "nftables" or not blockers.contested(paths, zone, interfaces, links):
        return paths
    try:
        chains = nft.read_chains(rendered.FORWARD_DISPATCH)
    except Exception:
        return paths
    # Nothing recognised (a release that names its chains otherwise): unread, never "no one wins".
    return replace(paths, dispatch=rendered.forward_dispatch(chains, paths.active) or None)


def _read_forwarding() -> Dict[str, str]:
    from calfwd.drivers.hostnet import read_forwarding
    return read_forwarding()


def firewalld_budget(seconds: Optional[float]) -> ContextManager[None]:
    """drivers/budget.budget, or nothing when seconds is None."""
    return nullcontext() if seconds is None else budgets.budget(seconds)


def _read_links() -> Tuple[cni.Link, ...]:
    from calfwd.drivers.hostnet import read_links
    return read_links()


def _read_bird_routes() -> bool:
    from calfwd.drivers.hostnet import read_bird_routes
    return read_bird_routes()


def _read_addresses() -> HostNetwork:
    from calfwd.drivers.hostnet import read_addresses
    return read_addresses()


def _ends_in_reload(plan: Any) -> bool:
    return bool(plan.ops) and (plan.ops[-1].verb, plan.ops[-1].obj) == ("reload", "firewalld")


def _with_blocking(layers: Sequence[LayerPlan], found: Dict[str, Tuple[str, ...]]) -> Tuple[LayerPlan, ...]:
    """The applied layers, with what the read-back found blocking (said, not only unverified)."""
    return tuple(replace(layer, blocking=layer.blocking + tuple(
        b for b in found.get(layer.layer, ()) if b not in layer.blocking)) for layer in layers)


def nft_orphans(nft: NftDriver, family: str, table: str) -> Tuple[str, ...]:
    """Tables of `family` other than `table` that carry calfwd's mark: made by calfwd under a
    name the config no longer has (plan_nft removes them; so does `calfwd cleanup`)."""
    names = sorted(t["name"] for t in nft.tables() if t.get("family") == family and t.get("name") != table)
    return tuple(n for n in names if nft.has_set(family, n, nft_plan.MARK_SET))
