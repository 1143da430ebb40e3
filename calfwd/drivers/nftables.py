"""The only code that talks to the kernel's nftables, through libnftables' JSON API.

One instance per process, created and used on the main-loop thread: libnftables contexts are
not thread-safe, and one context keeps its netlink socket and cache warm between reconciles.
The binding is imported when the context is made (drivers.nft_driver), so the rest of this
module (nft's error lines, the capability check, the reading of listings) is usable, and
tested, without it.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Optional, Sequence

from calfwd.drivers import ChainRef
from calfwd.drivers.errors import NftError  # noqa: F401 (named here too, where callers found it)


CAP_NET_ADMIN = 12
EMPTY_READS, EMPTY_PAUSE = 4, 0.02  # an empty-looking table is listed again, 60 ms at most
NEEDS_NET_ADMIN = "missing CAP_NET_ADMIN (run calfwd as root or from its systemd unit)"


def has_net_admin(status_path: str = "/proc/self/status") -> bool:
    """CAP_NET_ADMIN in the effective set; without it libnftables fails and prints its own line."""
    try:
        with open(status_path) as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True  # cannot tell: let the kernel decide


class Nftables:
    def __init__(self) -> None:
        import nftables  # the binding: only where a context is made

        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(False)

    def _allowed(self) -> None:
        if not has_net_admin():
            raise NftError(NEEDS_NET_ADMIN)

    def _list(self, command: str) -> Dict[str, Any]:
        self._allowed()
        rc, out, err = self._nft.cmd(command)
        if rc != 0:
            raise NftError(_one_line(err) or f"'{command}' failed")
        return json.loads(out) if out else {"nftables": []}

    def tables(self) -> List[Dict[str, Any]]:
        return [o["table"] for o in self._list("list tables")["nftables"] if "table" in o]

    def read_table(self, family: str, name: str) -> Optional[List[Dict[str, Any]]]:
        """The table's objects as nft lists them, or None when it does not exist.

        One listing, not 'list tables' first: that lookup was most of the nftables layer's time.
        """
        self._allowed()
        for attempt in range(EMPTY_READS):
            rc, out, err = self._nft.cmd(f"list table {family} {name}")
            if rc != 0:
                if "No such file or directory" in (err or ""):
                    return None
                raise NftError(_one_line(err) or f"cannot list table {family} {name}")
            objs = [o for o in (json.loads(out)["nftables"] if out else []) if "metainfo" not in o]
            if any("table" not in o for o in objs) or attempt == EMPTY_READS - 1:
                return objs
            # Only the table, nothing in it: seen in the lab while another calfwd's replace
            # transaction (add, delete, add the table with its objects) was being committed.
            # Look again before judging it (an empty table is not calfwd's: it has no mark).
            time.sleep(EMPTY_PAUSE)
        return objs

    def table_text(self, family: str, name: str) -> str:
        """The table as `nft list table` prints it, for people (the audit); JSON elsewhere."""
        self._allowed()
        self._nft.set_json_output(False)
        try:
            rc, out, err = self._nft.cmd(f"list table {family} {name}")
        finally:
            self._nft.set_json_output(True)
        if rc != 0:
            raise NftError(_one_line(err) or f"cannot list table {family} {name}")
        return out

    def has_set(self, family: str, table: str, name: str) -> bool:
        """One set's existence, without listing any elements (Felix's sets can be large)."""
        self._allowed()
        rc, _out, err = self._nft.cmd(f"list set {family} {table} {name}")
        if rc == 0:
            return True
        if "No such file or directory" in (err or ""):
            return False
        raise NftError(_one_line(err) or f"cannot list set {family} {table} {name}")

    def read_set(self, family: str, table: str, name: str) -> Optional[List[Any]]:
        """One set's elements (nft's JSON), or None when the set or its table does not exist."""
        self._allowed()
        rc, out, err = self._nft.cmd(f"list set {family} {table} {name}")
        if rc != 0:
            if "No such file or directory" in (err or ""):
                return None
            raise NftError(_one_line(err) or f"cannot list set {family} {table} {name}")
        for obj in (json.loads(out)["nftables"] if out else []):
            if "set" in obj:
                return list(obj["set"].get("elem", ()))
        return []

    def read_chains(self, wanted: Sequence[ChainRef]) -> Dict[ChainRef, List[Dict[str, Any]]]:
        """The rules of each (family, table, chain) that exists; absent ones are left out.

        Read-only and cheap (one listing per chain, not whole tables): the daemon looks at
        Felix's base chains after every reconcile to notice a flush (watch/flushes.py).
        """
        present = {(t["family"], t["name"]) for t in self.tables()}
        found: Dict[ChainRef, List[Dict[str, Any]]] = {}
        for family, table, chain in wanted:
            if (family, table) not in present:
                continue
            rc, out, _err = self._nft.cmd(f"list chain {family} {table} {chain}")
            if rc != 0:
                continue  # no such chain (the table exists without it)
            objs = json.loads(out)["nftables"] if out else []
            found[(family, table, chain)] = [o["rule"] for o in objs if "rule" in o]
        return found

    def run(self, batch: Dict[str, Any]) -> None:
        """Send one batch: one kernel transaction, all of it or none of it."""
        self._allowed()
        rc, _out, err = self._nft.json_cmd(batch)
        if rc != 0:
            raise NftError(_one_line(err) or "nftables rejected the batch")



def _one_line(err: str) -> str:
    """nft errors come with the command echoed and a caret line; keep the 'Error:' lines."""
    lines = [line.strip() for line in (err or "").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error") or "rror:" in line]
    text = "; ".join(errors or lines[:1])
    if "Operation not permitted" in text:
        text += " (calfwd needs CAP_NET_ADMIN: run it as root or from its systemd unit)"
    return text
