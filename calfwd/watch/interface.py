"""What the daemon asks of the watch wing, and what the watch wing asks of the rest.

The daemon sees the watch wing (kernel.KernelWatch) only through Watch: it tells it what
firewalld does on the bus and when a reconcile ran, and asks it what it knows for the
verdict. mypy holds the daemon to this, so the wing's insides (the flush tracker, the jump
index, the repair brake) can change without the daemon noticing.

The watch wing in turn is handed the nft driver to read with and a repair callable (Repair)
that the daemon binds to its reconciler: it never sees the reconciler itself.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Callable, Protocol, Tuple

from calfwd.config import Config
from calfwd.watch.flushes import Outage


class RepairedLayer(Protocol):
    """What the watch wing reads of a repair's nftables layer (reconcile.LayerPlan)."""

    @property
    def actions(self) -> Tuple[str, ...]: ...

    @property
    def empty(self) -> bool: ...

    @property
    def plan(self) -> Any: ...  # the nftables plan: its .table names calfwd's table


# Put calfwd's own table back (nftables layer only, never waiting on firewalld): the layer,
# the errors (the first one is reported), the seconds it took. reconcile.Reconciler.reconcile_nft.
Repair = Callable[[Config], Tuple[RepairedLayer, Tuple[str, ...], float]]


class Watch(Protocol):
    """The watch wing as the daemon sees it."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None: ...  # follow the kernel's nftables changes (the monitor)

    def stop(self) -> None: ...

    def configure(self, enabled: bool) -> None: ...  # after SIGHUP: [daemon] kernel_events

    # -- what firewalld does on the bus: "start", "reload", "stop" -----------------------------

    def begin(self, activity: str) -> None: ...

    def end(self, activity: str, observe: bool = False) -> None: ...  # observe: read the jumps now

    def busy(self, activity: str) -> bool: ...

    def track_version(self, firewalld_version: str) -> None: ...  # named in flush reports; "" keeps it

    # -- reconciles ----------------------------------------------------------------------------

    def reconciled(self, triggers: AbstractSet[str], firewalld_version: str) -> None: ...

    def observe(self) -> None: ...  # read the watched jumps now (at start, before the first reconcile)

    def carry(self, outages: Tuple[Outage, ...]) -> None: ...  # a previous run's, not undone yet

    # -- what it knows, for the verdict (status/health.assess) ---------------------------------

    def outages(self) -> Tuple[Outage, ...]: ...

    @property
    def firewalld_table_missing(self) -> bool: ...

    def blocking(self) -> Tuple[str, ...]: ...

    @property
    def following_kernel(self) -> bool: ...
