"""A Reconciler for the daemon's own decisions (coalescing, READY=1, the guard's judgement):
it reconciles instantly and records each run's label; with `reload`, the run ends in a
firewalld reload that the test answers later."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, List

from calfwd.desired import HostFacts
from calfwd.judge.cni import CniVerdict
from calfwd.reconcile import Outcome


class FakeReconciler:
    """Reconciles instantly; with `reload`, the run ends in a firewalld reload answered later."""

    def __init__(self) -> None:
        self.nft = SimpleNamespace(read_chains=lambda refs: {})
        self.firewalld = None
        self.labels: List[str] = []
        self.reload = False
        self.reloads: List[Callable[[], None]] = []
        self.cni = "calico"  # the CNI each run's facts name

    def reconcile(self, config: Any, trigger: str, reload_later: Any = None, budget: Any = None) -> Outcome:
        self.labels.append(trigger)
        outcome = Outcome(trigger, (), (), True, 0.0, 0.0, facts=HostFacts(cni=CniVerdict(self.cni)))
        if self.reload:
            self.reloads.append(lambda: reload_later(outcome))
            return Outcome(trigger, (), (), False, 0.0, 0.0, pending_reload=True)
        return outcome
