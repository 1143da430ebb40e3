"""Every event calfwd reports, as one structured journald entry (or one stderr line).

Operators filter on CALFWD_EVENT= and read `journalctl -x` for the catalog text that goes
with each MESSAGE_ID, so both are fixed per kind of event and never reused.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, TextIO

PRIORITY_ERR, PRIORITY_WARNING, PRIORITY_NOTICE, PRIORITY_INFO, PRIORITY_DEBUG = 3, 4, 5, 6, 7


@dataclass(frozen=True)
class Kind:
    name: str
    message_id: str
    priority: int


KINDS: Dict[str, Kind] = {k.name: k for k in (
    Kind("started", "3e4777b090d147e4968b1cacc7b70ce1", PRIORITY_INFO),
    Kind("reconciled", "a1d08a4c10cf4f388e47df857b9cf75e", PRIORITY_INFO),
    Kind("reconcile-failed", "9c309d742548443a961934ae8a9a8377", PRIORITY_ERR),
    Kind("firewalld-reloaded", "304a6151d04640019f321c0b74ec7aee", PRIORITY_INFO),
    Kind("firewalld-appeared", "60060f3fbe464341931de3c2694c04ab", PRIORITY_INFO),
    Kind("firewalld-vanished", "910250d1dda045b8b76bf4e865d35f03", PRIORITY_WARNING),
    Kind("config-invalid", "e0926a0fffe14d8785ee03f36c4c88ae", PRIORITY_ERR),
    Kind("config-reloaded", "fd45f384e8d8446e8b2b553bd7c51d7f", PRIORITY_INFO),
    Kind("conflict", "ce462d2e6ee245ceace016a53bfd5007", PRIORITY_WARNING),
    Kind("signal-ignored", "d065262961884a10a71f875afcc25241", PRIORITY_DEBUG),
    Kind("stopping", "d6c7222a4fff49e78fc4f16a099d57b7", PRIORITY_INFO),
    Kind("cleanup", "972baa683f8843c28c7ab389c3a66281", PRIORITY_NOTICE),
    Kind("firewalld-failed", "c1893d6738924ca4ac860b11b5824b54", PRIORITY_ERR),
    Kind("calico-flushed", "ffe543d76f3b4a269bf77a5b34d09865", PRIORITY_WARNING),
    # The [daemon] on_calico_flush command finished (exit 0), or failed / timed out / was refused /
    # did not start.
    Kind("flush-command", "971fa1b533014290a163981de661c65e", PRIORITY_NOTICE),
    Kind("flush-command-failed", "7f352ad4247a490a9ada7c33107b3489", PRIORITY_WARNING),
    # Kernel events (nft monitor): kube-proxy's rules alone flushed; calfwd's table repaired.
    Kind("kube-proxy-flushed", "74fab3a5e3894149b679043f7921fbe6", PRIORITY_WARNING),
    # flannel's, kube-router's or portmap's rules alone flushed (Canal and flannel nodes).
    Kind("cni-flushed", "6294c2e9ff4a4c6993bfda77fa15c8d1", PRIORITY_WARNING),
    Kind("table-repaired", "5444691669554a9ba2f7d989287c01ac", PRIORITY_WARNING),
    Kind("kernel-events-lost", "546f02ec1cc448a5898ab40c8d379706", PRIORITY_WARNING),
    Kind("kernel-events-restored", "f75bf7a4b543482ab2bfcfda237efdfb", PRIORITY_INFO),
    Kind("firewalld-table-missing", "ea8db5d305d6411180872aefb10ed3ea", PRIORITY_ERR),
    Kind("firewalld-table-restored", "e382041b4cd54362a7894182fc8abdfd", PRIORITY_INFO),
    # /run/calfwd/status.json and health (statusfile.py) could not be written.
    Kind("status-file-failed", "60cfa92717a94027be363b50978b8a8e", PRIORITY_WARNING),
    # [metrics] textfile could not be written (said once until a write succeeds again).
    Kind("metrics-write-failed", "67ee3504c5af4558bb437f7dc6a30a02", PRIORITY_WARNING),
    # [labels] features_file could not be written, or what is there is not calfwd's (said once).
    Kind("labels-write-failed", "0b3d7e1f4a6c4f53b0e2d9a8c7f61e24", PRIORITY_WARNING),
    # ip_pools = "auto": the pools read from Felix's sets changed; or none can be known.
    Kind("pools-changed", "a857d80e024d439da2af1f54254bb44a", PRIORITY_NOTICE),
    Kind("pools-unknown", "dfbd1112eaa64e369aecd376c6ec3a6e", PRIORITY_WARNING),
    # Something outside calfwd's objects shuts a Calico path (judge/blockers.py), and its end.
    Kind("path-blocked", "9cce70a8d95e4f2d9c91d7aac6cf1474", PRIORITY_WARNING),
    Kind("path-unblocked", "67d9e459457741f4bb14396295fa3f9a", PRIORITY_INFO),
)}

JOURNAL_SOCKET = "/run/systemd/journal/socket"


def _journal_sender() -> Optional[Callable[..., None]]:
    """journald's send, when a journal is listening; None sends events to stderr instead."""
    if os.environ.get("CALFWD_LOG") == "stderr" or not os.path.exists(JOURNAL_SOCKET):
        return None
    try:
        from systemd import journal
    except ImportError:
        return None
    return journal.send


class Reporter:
    """Emits events; `min_priority` hides chattier ones (debug) unless asked for."""

    def __init__(self, stream: Optional[TextIO] = None, journal: Any = "auto",
                 min_priority: int = PRIORITY_INFO) -> None:
        self._send = _journal_sender() if journal == "auto" else journal
        self._stream = stream or sys.stderr
        self.min_priority = min_priority
        # Called with (kind, fields) for every event, hidden ones included: the metrics count
        # them. A listener's failure never costs the event.
        self.listeners: List[Callable[[str, Dict[str, Any]], None]] = []

    @property
    def to_journal(self) -> bool:
        return self._send is not None

    def emit(self, event: str, message: str, **fields: Any) -> None:
        kind = KINDS[event]
        for listener in self.listeners:
            try:
                listener(event, fields)
            except Exception:
                pass
        if kind.priority > self.min_priority:
            return
        extra = {f"CALFWD_{k.upper()}": _text(v) for k, v in fields.items() if v is not None}
        if self._send is not None:
            try:
                self._send(message, MESSAGE_ID=kind.message_id, PRIORITY=str(kind.priority),
                           SYSLOG_IDENTIFIER="calfwd", CALFWD_EVENT=event, **extra)
                return
            except OSError:
                pass  # journald gone (restarting): stderr still reaches someone
        tail = " ".join(f"{k[7:].lower()}={extra[k]}" for k in sorted(extra))
        print(f"calfwd[{event}] {message}" + (f" ({tail})" if tail else ""), file=self._stream, flush=True)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
