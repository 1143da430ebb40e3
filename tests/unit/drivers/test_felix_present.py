"""drivers/felixsets.present: whether Felix's rules are on the node (judge/cni.py's sign of
Calico), from nftables first and Felix's ip sets where a flush may have taken its chains."""

from __future__ import annotations

from calfwd.drivers import felixsets


class Nft:
    def __init__(self, tables=(), chains=None, fail=False):
        self._tables, self._chains, self._fail = tables, chains or {}, fail

    def tables(self):
        if self._fail:
            raise RuntimeError("needs CAP_NET_ADMIN")
        return [{"family": f, "name": n} for f, n in self._tables]

    def read_chains(self, wanted):
        return {ref: rules for ref, rules in self._chains.items() if ref in wanted}


def no_ipset(monkeypatch):
    monkeypatch.setattr(felixsets, "which", lambda tool: None)


def ipsets(monkeypatch, names):
    monkeypatch.setattr(felixsets, "which", lambda tool: "/usr/sbin/ipset")
    monkeypatch.setattr(felixsets, "run", lambda argv: "\n".join(names) + "\n")


def test_felixs_nftables_table_or_its_forward_chain(monkeypatch):
    no_ipset(monkeypatch)
    assert felixsets.present(Nft(tables=[("ip", "calico")])) is True
    assert felixsets.present(Nft(tables=[("ip", "filter")], chains={("ip", "filter", "cali-FORWARD"): []})) is True
    assert felixsets.present(Nft(tables=[("ip", "filter")])) is False
    assert felixsets.present(Nft(fail=True)) is None  # unread, never "no Felix"


def test_felixs_ip_sets_outlive_a_flush_of_its_chains(monkeypatch):
    ipsets(monkeypatch, ["KUBE-X", "cali40all-ipam-pools", "cali40this-host"])
    assert felixsets.present(Nft(tables=[("ip", "filter")])) is True
    assert felixsets.present(Nft(fail=True)) is True
    assert felixsets.present(Nft(tables=[("ip", "filter")]), ip_sets=False) is False
    ipsets(monkeypatch, ["KUBE-X"])
    assert felixsets.present(Nft(tables=[("ip", "filter")])) is False
