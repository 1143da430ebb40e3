"""drivers/nftables.py read_table, against a stand-in for libnftables' context (pure)."""

from __future__ import annotations

import json

from calfwd.drivers import nftables as driver

TABLE = {"table": {"family": "inet", "name": "calfwd", "handle": 3}}
MARK = {"set": {"family": "inet", "table": "calfwd", "name": "calfwd_managed", "type": "ipv4_addr"}}


class Context:
    def __init__(self, *listings):
        self.listings = list(listings)
        self.calls = 0

    def cmd(self, _command):
        self.calls += 1
        objs = self.listings.pop(0) if len(self.listings) > 1 else self.listings[0]
        return 0, json.dumps({"nftables": [{"metainfo": {}}] + objs}), ""


def reader(context, monkeypatch):
    monkeypatch.setattr(driver, "has_net_admin", lambda: True)
    monkeypatch.setattr(driver.time, "sleep", lambda _s: None)
    nft = driver.Nftables.__new__(driver.Nftables)
    nft._nft = context
    return nft


def test_an_empty_looking_table_is_listed_again_before_it_is_judged(monkeypatch):
    """Seen in the lab: six concurrent `calfwd apply`s, one listed another's table as empty
    while its replace transaction was committed, and refused it as not calfwd's (no mark)."""
    context = Context([TABLE], [TABLE, MARK])
    assert reader(context, monkeypatch).read_table("inet", "calfwd") == [TABLE, MARK]
    assert context.calls == 2


def test_a_table_that_stays_empty_is_returned_as_it_is(monkeypatch):
    context = Context([TABLE])
    assert reader(context, monkeypatch).read_table("inet", "calfwd") == [TABLE]
    assert context.calls == driver.EMPTY_READS
