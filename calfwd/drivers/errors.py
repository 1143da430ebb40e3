"""What the drivers say when they fail, and how reachable firewalld is: no binding imported.

The CLI, the reconciler and the unit tests recognise a driver's failure by these classes
(isinstance, never the class's name), so they need neither dbus-python nor libnftables'
binding to be installed to do it.

firewalld's reachability has one vocabulary, in two grains: why one call got no answer
(a FirewalldError's `kind`: ABSENT, SILENT, DENIED, NO_BUS, from the bus's error name) and
what that makes of firewalld as a whole (RUNNING, STOPPED, UNREACHABLE, NOT_ANSWERING, what
`calfwd cleanup` and `apply --offline` decide on). REACHABILITY maps the first onto the
second, here and nowhere else.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Tuple

# -- firewalld as a whole ------------------------------------------------------------------
# Only STOPPED (nobody owns its bus name) lets calfwd edit firewalld's files; the others
# mean a live daemon calfwd cannot reach, or one not ready.
RUNNING = "running"
STOPPED = "stopped"
UNREACHABLE = "unreachable"  # the bus itself cannot be asked (no bus, wrong address, denied)
NOT_ANSWERING = "not answering"  # firewalld owns its name but does not answer, or is not RUNNING

# -- one call ------------------------------------------------------------------------------
# Why a call got no answer, from the bus's error name. "absent" is the only harmless one:
# nobody owns firewalld's name, so there is nothing to verify. The others mean calfwd
# cannot know what firewalld does, and must never be reported as "in sync".
ABSENT = "absent"
SILENT = "not-answering"
DENIED = "denied"
NO_BUS = "no-bus"

# A failed call's kind -> firewalld's reachability; a kind not listed (a failure that is
# firewalld's own answer, or an unknown bus error) is UNREACHABLE: calfwd cannot know.
REACHABILITY: Dict[str, str] = {
    ABSENT: STOPPED,
    SILENT: NOT_ANSWERING,
    DENIED: UNREACHABLE,
    NO_BUS: UNREACHABLE,
}

KINDS: Dict[str, str] = {
    "org.freedesktop.DBus.Error.ServiceUnknown": ABSENT,
    "org.freedesktop.DBus.Error.NameHasNoOwner": ABSENT,
    "org.freedesktop.DBus.Error.NoReply": SILENT,
    "org.freedesktop.DBus.Error.Timeout": SILENT,
    "org.freedesktop.DBus.Error.TimedOut": SILENT,
    "org.freedesktop.DBus.Error.AccessDenied": DENIED,
    "org.freedesktop.DBus.Error.AuthFailed": DENIED,
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired": DENIED,
    "org.fedoraproject.FirewallD1.NotAuthorizedException": DENIED,  # its polkit check
    "org.freedesktop.DBus.Error.NoServer": NO_BUS,
    "org.freedesktop.DBus.Error.NoNetwork": NO_BUS,
    "org.freedesktop.DBus.Error.Disconnected": NO_BUS,
    "org.freedesktop.DBus.Error.FileNotFound": NO_BUS,
    "org.freedesktop.DBus.Error.BadAddress": NO_BUS,
    "org.freedesktop.DBus.Error.NotSupported": NO_BUS,
}
WHY: Dict[str, str] = {
    SILENT: "firewalld owns its bus name but does not answer (hung, or busy longer than "
            "calfwd waits)",
    DENIED: "the bus or firewalld refused calfwd (not authorised: run as root)",
    NO_BUS: "cannot reach the system bus",
}

_CODE = re.compile(r"^([A-Z][A-Z_]+):\s*(.*)$", re.S)


def reachability(kind: str) -> str:
    """firewalld's reachability, judged from why one call failed."""
    return REACHABILITY.get(kind, UNREACHABLE)


class FirewalldError(Exception):
    """A D-Bus call failed. `code` is firewalld's error code (ZONE_CONFLICT, INVALID_ZONE, ...),
    parsed from the message: firewalld sends every error as org.fedoraproject.FirewallD1.Exception.
    `kind` says why there was no answer at all (ABSENT, SILENT, DENIED, NO_BUS), or is "".
    """

    def __init__(self, action: str, dbus_name: str = "", message: str = "", text: str = ""):
        self.action = action
        self.dbus_name = dbus_name
        self.message = message
        match = _CODE.match(message or "")
        self.code = match.group(1) if match else ""
        self.kind = KINDS.get(dbus_name, DENIED if self.code == "NOT_AUTHORIZED" else "")
        if self.kind == SILENT and "disconnected" in (message or "").lower():
            self.kind = ABSENT  # it exited during the call (a stop or restart): not hung
        super().__init__(text or f"{action}: {message or dbus_name or 'failed'}"
                         + (f" ({dbus_name})" if dbus_name and not match else ""))


def explained(exc: FirewalldError) -> FirewalldError:
    """Put the meaning of a bus-level failure in front of the bus's own words."""
    why = WHY.get(exc.kind)
    if not why:
        return exc
    out = FirewalldError(exc.action, exc.dbus_name, exc.message,
                         text=f"{why}: {exc.action}: {exc.message or exc.dbus_name}")
    out.kind = exc.kind
    return out


class Unreachable:
    """The firewalld client when the system bus itself could not be reached: every question
    fails with that reason, so nothing is ever reported as in sync."""

    def __init__(self, dbus_name: str, message: str) -> None:
        error = FirewalldError("connect to the system bus", dbus_name, message)
        error.kind = error.kind if error.kind in (NO_BUS, DENIED) else NO_BUS
        self.error = explained(error)

    def _fail(self, *_args: Any, **_kwargs: Any) -> Any:
        raise self.error

    state = info = facts = read = read_paths = runtime_zone_target = apply = zone_runtime = \
        check_permanent_config = state_async = reload_async = _fail

    def reachability(self) -> Tuple[str, str]:
        return UNREACHABLE, str(self.error)


class NftError(Exception):
    """libnftables refused a command; the message is nft's own, trimmed to one line."""


class OfflineError(Exception):
    """firewall-offline-cmd is missing, failed or timed out; the message says which."""


def layer(exc: BaseException) -> str:
    """The layer whose driver raised exc, for the one line the CLI prints; else the class name."""
    if isinstance(exc, NftError):
        return "nftables"
    if isinstance(exc, FirewalldError):
        return "firewalld"
    return type(exc).__name__
