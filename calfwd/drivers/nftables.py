"""The only code that talks to the kernel's nftables, through libnftables' JSON API.

One instance per process, created and used on the main-loop thread: libnftables contexts are
not thread-safe, and one context keeps its netlink socket and cache warm between reconciles.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import nftables


class NftError(Exception):
    """libnftables refused a command; the message is nft's own, trimmed to one line."""


class Nftables:
    def __init__(self) -> None:
        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)

    def _list(self, command: str) -> Dict[str, Any]:
        rc, out, err = self._nft.cmd(command)
        if rc != 0:
            raise NftError(_one_line(err) or f"'{command}' failed")
        return json.loads(out) if out else {"nftables": []}

    def tables(self) -> List[Dict[str, Any]]:
        return [o["table"] for o in self._list("list tables")["nftables"] if "table" in o]

    def read_table(self, family: str, name: str) -> Optional[List[Dict[str, Any]]]:
        """The table's objects as nft lists them, or None when it does not exist."""
        if not any(t["family"] == family and t["name"] == name for t in self.tables()):
            return None
        return [o for o in self._list(f"list table {family} {name}")["nftables"] if "metainfo" not in o]

    def run(self, batch: Dict[str, Any]) -> None:
        """Send one batch: one kernel transaction, all of it or none of it."""
        rc, _out, err = self._nft.json_cmd(batch)
        if rc != 0:
            raise NftError(_one_line(err) or "nftables rejected the batch")

    def ruleset_text(self) -> str:
        """The whole ruleset as nft prints it: for byte-for-byte comparisons and doctor."""
        self._nft.set_json_output(False)
        try:
            rc, out, err = self._nft.cmd("list ruleset")
        finally:
            self._nft.set_json_output(True)
        if rc != 0:
            raise NftError(_one_line(err) or "cannot list the ruleset")
        return out


def _one_line(err: str) -> str:
    """nft errors come with the command echoed and a caret line; keep the 'Error:' lines."""
    lines = [line.strip() for line in (err or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error") or "rror:" in line]
    text = "; ".join(errors or lines[:1])
    if "Operation not permitted" in text:
        text += " (calfwd needs CAP_NET_ADMIN: run it as root or from its systemd unit)"
    return text
