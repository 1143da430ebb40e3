"""A Reporter for unit tests: keeps every event instead of sending it to the journal."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple


class Reporter:
    def __init__(self) -> None:
        self.events: List[Tuple[str, str, Dict[str, Any]]] = []

    def emit(self, event: str, message: str, **fields: Any) -> None:
        self.events.append((event, message, fields))

    def kinds(self) -> List[str]:
        return [e[0] for e in self.events]
