"""The one fake nftables driver (a whole calfwd.drivers.NftDriver): tables as lists of objects,
a batch applied whole, as the kernel does."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple


class FakeNft:
    """Tables as lists of objects; a batch is applied whole, as the kernel does."""

    def __init__(self, fail: Optional[str] = None) -> None:
        """fail: every read raises RuntimeError(fail), as a driver without CAP_NET_ADMIN."""
        self.tables_: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
        self.batches = 0
        self.fail = fail

    def tables(self) -> List[Dict[str, Any]]:
        return [{"family": f, "name": n} for f, n in self.tables_]

    def read_table(self, family: str, name: str) -> Optional[List[Dict[str, Any]]]:
        if self.fail:
            raise RuntimeError(self.fail)
        objs = self.tables_.get((family, name))
        return None if objs is None else list(objs)

    def has_set(self, family: str, table: str, name: str) -> bool:
        return any(next(iter(o.values())).get("name") == name and "set" in o
                   for o in self.tables_.get((family, table), ()))

    def read_set(self, family: str, table: str, name: str) -> Optional[List[Any]]:
        for obj in self.tables_.get((family, table), ()):
            if "set" in obj and obj["set"].get("name") == name:
                return list(obj["set"].get("elem", ()))
        return None

    def read_chains(self, wanted):
        return {}

    def table_text(self, family: str, name: str) -> str:
        return f"table {family} {name} {{\n}}\n" if (family, name) in self.tables_ else ""

    def run(self, batch: Dict[str, Any]) -> None:
        self.batches += 1
        current: Optional[Tuple[str, str]] = None
        for command in batch["nftables"]:
            (verb, obj), = command.items()
            (kind, body), = obj.items()
            if kind == "table":
                current = (body["family"], body["name"])
                if verb == "delete":
                    self.tables_.pop(current, None)
                    continue
                self.tables_.setdefault(current, [])
                if not self.tables_[current]:
                    self.tables_[current].append(obj)
            else:
                assert current is not None, "an object before its table"
                self.tables_[current].append(obj)
