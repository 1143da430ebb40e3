"""The only code that touches the system, behind two small interfaces.

The reconciler and the daemon see the drivers only through these protocols, so a unit test
can hand them a fake (tests/unit/test_reconcile.py) and a newcomer can see at a glance what
each layer needs from the host: nftables is read and replaced as whole tables, firewalld is
read into plain data and told to execute a plan.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

ChainRef = Tuple[str, str, str]  # (family, table, chain)

# Whether firewalld is there, as `calfwd cleanup` must know it: only STOPPED (nobody owns its bus
# name) lets calfwd edit firewalld's files; the others mean a live daemon calfwd cannot reach.
RUNNING = "running"
STOPPED = "stopped"
UNREACHABLE = "unreachable"  # the bus itself cannot be asked (no bus, wrong address, denied)
NOT_ANSWERING = "not answering"  # firewalld owns its name but does not answer, or is not RUNNING


class NftDriver(Protocol):
    """drivers/nftables.py: one libnftables context on the main-loop thread."""

    def tables(self) -> List[Dict[str, Any]]: ...

    def read_table(self, family: str, name: str) -> Optional[List[Dict[str, Any]]]: ...

    def has_set(self, family: str, table: str, name: str) -> bool: ...

    def read_set(self, family: str, table: str, name: str) -> Optional[List[Any]]: ...

    def read_chains(self, wanted: Sequence[ChainRef]) -> Dict[ChainRef, List[Dict[str, Any]]]: ...

    def run(self, batch: Dict[str, Any]) -> None: ...


class FirewalldDriver(Protocol):
    """drivers/firewalld.py: firewalld over D-Bus, read into plan/firewalld_model.py's types."""

    def state(self) -> Optional[str]: ...  # None: nobody owns its name; raises when unknowable

    # The daemon's two calls that may take long (a start, a reload) never block its loop.
    def state_async(self, done: Callable[[Optional[str], Optional[Exception]], None]) -> None: ...

    def reload_async(self, done: Callable[[Optional[Exception]], None]) -> None: ...

    def reachability(self) -> Tuple[str, str]: ...  # (RUNNING | STOPPED | ..., why)

    def facts(self) -> Any: ...  # desired.HostFacts

    def read(self, desired: Any) -> Any: ...  # FirewalldDesired -> FirewalldActual

    def read_paths(self) -> Any: ...  # blockers.FirewalldPaths: panic mode, zones, policies

    def runtime_zone_target(self, name: str) -> str: ...

    def apply(self, plan: Any) -> None: ...  # FirewalldPlan
