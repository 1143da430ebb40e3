"""The only code that touches the system, behind two small interfaces, made in one place.

The reconciler and the daemon see the drivers only through these protocols, so a unit test
can hand them a fake (tests/unit/test_reconcile.py) and a newcomer can see at a glance what
each layer needs from the host: nftables is read and replaced as whole tables, firewalld is
read into plain data and told to execute a plan. mypy (`make unit`) holds the drivers and
their callers to them.

Nothing here imports a binding (dbus-python, libnftables', gi, systemd): the factories below
import the driver modules when called, and the errors (errors.py) and the firewalld call
budget (budget.py) need none, so everything but the drivers themselves runs and is tested
without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from calfwd.drivers.errors import NOT_ANSWERING, RUNNING, STOPPED, UNREACHABLE, FirewalldError  # noqa: F401

if TYPE_CHECKING:  # the types only: these modules need no binding either, but import much
    from calfwd.judge.blockers import FirewalldPaths
    from calfwd.desired import FirewalldDesired, HostFacts
    from calfwd.plan.firewalld.model import FirewalldActual, FirewalldInfo, FirewalldPlan

ChainRef = Tuple[str, str, str]  # (family, table, chain)


class NftDriver(Protocol):
    """drivers/nftables.py: one libnftables context on the main-loop thread."""

    def tables(self) -> List[Dict[str, Any]]: ...

    def read_table(self, family: str, name: str) -> Optional[List[Dict[str, Any]]]: ...

    def has_set(self, family: str, table: str, name: str) -> bool: ...

    def read_set(self, family: str, table: str, name: str) -> Optional[List[Any]]: ...

    def read_chains(self, wanted: Sequence[ChainRef]) -> Dict[ChainRef, List[Dict[str, Any]]]: ...

    def run(self, batch: Dict[str, Any]) -> None: ...

    def table_text(self, family: str, name: str) -> str: ...  # `nft list table`, for the audit


class FirewalldDriver(Protocol):
    """drivers/firewalld.py: firewalld over D-Bus, read into plan/firewalld/model.py's types."""

    def state(self) -> Optional[str]: ...  # None: nobody owns its name; raises when unknowable

    # The daemon's two calls that may take long (a start, a reload) never block its loop.
    def state_async(self, done: Callable[[Optional[str], Optional[FirewalldError]], None]) -> None: ...

    def reload_async(self, done: Callable[[Optional[FirewalldError]], None]) -> None: ...

    def reachability(self) -> Tuple[str, str]: ...  # (RUNNING | STOPPED | ..., why): errors.py

    def info(self) -> FirewalldInfo: ...

    def facts(self) -> HostFacts: ...

    def read(self, desired: FirewalldDesired) -> FirewalldActual: ...

    def read_paths(self) -> FirewalldPaths: ...  # panic mode, zones, policies

    def runtime_zone_target(self, name: str) -> str: ...

    def zone_runtime(self, name: str) -> Dict[str, Any]: ...  # the audit

    def check_permanent_config(self) -> str: ...  # firewalld's verdict, "" when fine

    def apply(self, plan: FirewalldPlan) -> None: ...


class FirewalldReader(FirewalldDriver, Protocol):
    """doctor's client: firewalld's own view beyond what the reconciler reads, read-only."""

    def config_property(self, name: str) -> Optional[str]: ...

    def runtime_direct(self) -> Tuple[str, ...]: ...

    def pid(self) -> Optional[int]: ...


# -- the one place drivers are made -------------------------------------------------------------


def nft_driver() -> NftDriver:
    """libnftables' context (drivers/nftables.py); one per process, on the main-loop thread."""
    from calfwd.drivers.nftables import Nftables
    return Nftables()


def system_bus() -> Any:
    """The system bus (dbus-python); raises its DBusException when it cannot be reached."""
    from calfwd.drivers.firewalld import system_bus as connect_bus
    return connect_bus()


def firewalld_driver(bus: Any = None, timeout: float = 5.0, reload_timeout: float = 60.0) -> FirewalldDriver:
    """firewalld over `bus` (a dbus connection: the daemon's, which it also listens on);
    None: the system bus, raising dbus's DBusException when it cannot be reached."""
    from calfwd.drivers.firewalld import Firewalld
    return Firewalld(system_bus() if bus is None else bus, timeout, reload_timeout)


def firewalld_reader(bus: Any) -> FirewalldReader:
    """doctor's firewalld client (firewalld_driver's, and read-only extras)."""
    from calfwd.drivers.firewalld import Reader
    return Reader(bus)


def firewalld_or_unreachable() -> FirewalldDriver:
    """firewalld on the system bus; without a bus, a client whose every answer is that error:
    calfwd cannot tell whether firewalld runs, so nothing may be called in sync."""
    from calfwd.drivers.firewalld import connect
    return connect()
