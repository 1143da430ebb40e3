"""watch/kernel.py's decisions on a fake loop and fake clock: which monitor lines lead to a
repair, a re-read, a flush report with which cause; the repair brake; what lost events do.
(The real monitor, kernel and firewalld: tests/integration/test_kernel_events_in_lab.py.)"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, List, Tuple

from recorder import Reporter

from calfwd import config as cfg
from calfwd.watch.kernel import REPAIR_BURST, KernelWatch
from calfwd.reconcile import LayerPlan
from calfwd.plan.nftables import NftPlan
from fakes.loop import Loop

CONFIG = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16"]\nnat_outgoing = true\n', "/etc/calfwd/calfwd.toml")
JUMP = {"expr": [{"jump": {"target": "cali-FORWARD"}}]}


class Host:
    """What the fake drivers read: Felix's FORWARD jump, firewalld's tables, calfwd's drift."""

    def __init__(self) -> None:
        self.felix = True
        self.tables = {("inet", "firewalld"), ("ip", "filter")}
        self.drift = False
        self.repairs = 0

    def read_chains(self, refs):
        return {ref: [JUMP] for ref in refs if ref == ("ip", "filter", "FORWARD") and self.felix}

    def table_list(self):
        return [{"family": f, "name": n} for f, n in self.tables]

    def reconcile_nft(self, _config):
        changed, self.drift = self.drift, False
        self.repairs += changed
        plan = NftPlan("inet calfwd", ("table inet calfwd is missing",), {"nftables": []})
        return (LayerPlan("nftables", plan.reasons, plan=plan) if changed else LayerPlan("nftables", ())), (), 0.002


def watch() -> Tuple[KernelWatch, Loop, Reporter, Host]:
    loop, reporter, host = Loop(100.0), Reporter(), Host()
    nft = SimpleNamespace(read_chains=host.read_chains, tables=host.table_list)
    kw = KernelWatch(loop, reporter, nft, host.reconcile_nft, lambda: CONFIG, lambda: ":1.1", lambda: None,
                     clock=loop.clock)
    kw.monitor = SimpleNamespace(running=True, stop=lambda: None)  # following the kernel
    kw.observe()
    return kw, loop, reporter, host


def line(verb: str, kind: str, family: str, table: str, chain: str = "") -> str:
    if kind == "table":
        return f'{{"{verb}": {{"table": {{"family": "{family}", "name": "{table}", "handle": 1}}}}}}'
    key = "chain" if kind == "rule" else "name"
    return f'{{"{verb}": {{"{kind}": {{"family": "{family}", "table": "{table}", "{key}": "{chain}", "handle": 2}}}}}}'


def test_a_change_to_calfwds_table_is_repaired_and_its_echo_is_not():
    kw, loop, reporter, host = watch()
    host.drift = True
    kw._on_kernel_line(line("delete", "table", "inet", "calfwd"))
    loop.run(0.1)
    assert reporter.kinds() == ["table-repaired"] and host.repairs == 1
    kw._on_kernel_line(line("add", "table", "inet", "calfwd"))  # calfwd's own write, seen again
    loop.run(0.1)
    assert reporter.kinds() == ["table-repaired"] and host.repairs == 1


def test_another_writer_fighting_calfwd_pauses_repairs_until_the_resync():
    kw, loop, reporter, host = watch()
    for _ in range(REPAIR_BURST + 3):
        host.drift = True
        kw._on_kernel_line(line("delete", "rule", "inet", "calfwd", "postrouting"))
        loop.run(0.2)
    assert reporter.kinds().count("table-repaired") == REPAIR_BURST + 1
    conflicts = [message for kind, message, _ in reporter.events if kind == "conflict"]
    assert len(conflicts) == 1 and "another calfwd" in conflicts[0]
    kw.reconciled({"resync"}, "1.3.3")  # the resync repaired it; event repair resumes
    host.drift = True
    kw._on_kernel_line(line("delete", "rule", "inet", "calfwd", "postrouting"))
    loop.run(0.2)
    assert reporter.kinds()[-1] == "table-repaired"


def test_calfwds_table_gone_while_repairs_are_paused_blocks_until_a_reconcile_puts_it_back():
    kw, loop, reporter, host = watch()
    said = []
    kw._on_status = lambda: said.append(kw.blocking())
    host.tables.add(("inet", "calfwd"))
    for _ in range(REPAIR_BURST + 1):
        host.drift = True
        kw._on_kernel_line(line("delete", "rule", "inet", "calfwd", "postrouting"))
        loop.run(0.2)
    assert said == [()], "the brake engaging republishes the verdict at once"
    assert kw.blocking() == ()  # paused, but the table is there
    host.tables.discard(("inet", "calfwd"))
    kw._on_kernel_line(line("delete", "table", "inet", "calfwd"))
    loop.run(0.2)
    assert len(said) == 2 and "is missing and calfwd has paused its repairs" in said[-1][0]
    assert "every 60 s" in said[-1][0]
    host.tables.add(("inet", "calfwd"))
    kw.reconciled({"config-reloaded"}, "1.3.3")  # SIGHUP's reconcile put it back; still paused
    assert said[-1] == () and kw.blocking() == ()
    host.tables.discard(("inet", "calfwd"))
    kw._on_kernel_line(line("delete", "table", "inet", "calfwd"))
    loop.run(0.2)
    assert kw.blocking()
    kw.reconciled({"resync"}, "1.3.3")  # resumes repairs: nothing is paused any more
    assert kw.blocking() == ()


def test_a_flush_inside_firewalds_reload_is_one_report_blaming_the_reload():
    kw, loop, reporter, host = watch()
    kw.firewalld_version = "1.3.3"
    kw._on_kernel_line(line("add", "table", "inet", "firewalld_policy_drop"))
    host.felix = False
    kw._on_kernel_line(line("delete", "rule", "ip", "filter", "FORWARD"))
    kw._on_kernel_line(line("delete", "table", "ip", "filter"))
    loop.run(1.0)
    assert reporter.kinds() == [], "held while firewalld is busy"
    kw._on_kernel_line(line("delete", "table", "inet", "firewalld_policy_drop"))
    kw.end("reload")  # the bus's Reloaded, a little later
    loop.run(5.0)
    assert reporter.kinds() == ["calico-flushed"]
    event, message, fields = reporter.events[0]
    assert fields["cause"] == "reload" and "firewalld 1.3.3 flushed Calico's iptables rules on reload" in message


def test_rules_that_only_felix_changes_cost_no_read():
    kw, loop, reporter, host = watch()
    reads = []
    original = kw.nft.read_chains
    kw.nft.read_chains = lambda refs: reads.append(refs) or original(refs)
    kw._on_kernel_line(line("add", "rule", "ip", "filter", "cali-fw-cali0123456789a"))
    kw._on_kernel_line(line("add", "rule", "ip", "nat", "KUBE-SVC-ABCDEF"))
    loop.run(1.0)
    assert reads == [] and reporter.kinds() == []


def test_lost_events_read_everything_and_end_a_reload_whose_end_was_lost():
    kw, loop, reporter, host = watch()
    kw._on_kernel_line(line("add", "table", "inet", "firewalld_policy_drop"))
    assert kw.flushes.busy("reload")
    kw._on_kernel_line("# ERROR: We lost some netlink events!")
    loop.run(0.1)
    assert not kw.flushes.busy("reload"), "its drop table is gone: the reload is over"


def test_felix_pool_sets_changing_ask_for_a_reconcile_only_with_auto_pools():
    asked = []
    for config, expected in ((CONFIG, []), (cfg.parse('[calico]\nip_pools = "auto"\n', "/c.toml"), ["pools"])):
        asked.clear()
        kw = KernelWatch(Loop(100.0), Reporter(), SimpleNamespace(), Host().reconcile_nft, lambda: config,
                         lambda: ":1.1", lambda: None, on_pools=lambda: asked.append("pools"))
        kw._on_kernel_line('{"add": {"element": {"family": "ip", "table": "calico", "name": '
                           '"cali40all-ipam-pools", "elem": {"set": ["10.9.0.0/16"]}}}}')
        assert asked == expected


def rule_line(verb: str, handle: int, target: str = "", chain: str = "FORWARD") -> str:
    """A rule event as `nft --json monitor` prints it (add and delete alike carry the rule)."""
    expr = [{"jump": {"target": target}}] if target else [{"counter": {"packets": 0, "bytes": 0}}]
    return json.dumps({verb: {"rule": {"family": "ip", "table": "filter", "chain": chain, "handle": handle,
                                       "expr": expr}}})


class LongChain(Host):
    """FORWARD holding Felix's jump (twice, handles 7 and 8) among 3,000 rules of others."""

    def __init__(self) -> None:
        super().__init__()
        self.rules = [{"handle": 100 + i, "expr": [{"counter": {}}]} for i in range(3000)]
        self.rules[5:5] = [dict(JUMP, handle=7), dict(JUMP, handle=8)]

    def read_chains(self, refs):
        return {ref: list(self.rules) for ref in refs if ref == ("ip", "filter", "FORWARD")}


def long_watch() -> Tuple[KernelWatch, Loop, Reporter, List[Any]]:
    loop, reporter, host = Loop(100.0), Reporter(), LongChain()
    reads: List[Any] = []
    nft = SimpleNamespace(read_chains=lambda refs: reads.append(refs) or host.read_chains(refs), tables=host.table_list)
    kw = KernelWatch(loop, reporter, nft, host.reconcile_nft, lambda: CONFIG, lambda: ":1.1", lambda: None,
                     clock=loop.clock)
    kw.monitor = SimpleNamespace(running=True, stop=lambda: None)
    kw.observe()  # the baseline: one read at start
    reads.clear()
    return kw, loop, reporter, reads


def test_changes_in_a_long_watched_chain_are_followed_without_reading_it():
    """Others' rules coming and going in FORWARD (3,000 of them) cost no read of the chain: the
    jumps are followed by handle from the monitor's own events."""
    kw, loop, reporter, reads = long_watch()
    for handle in range(5000, 5050):
        kw._on_kernel_line(rule_line("add", handle))
        kw._on_kernel_line(rule_line("delete", handle))
        loop.run(0.05)
    kw._on_kernel_line(rule_line("delete", 120))  # one of the others' rules
    loop.run(1.0)
    assert reads == [] and reporter.kinds() == []


def test_a_flush_of_a_long_chain_is_seen_from_its_deletes_at_once():
    """A flush (or a table deleted) comes as a delete of every rule: losing the last rule that
    holds a jump is a loss, judged without reading the chain; a jump added back restores it."""
    kw, loop, reporter, reads = long_watch()
    kw.firewalld_version = "1.3.3"
    kw._on_kernel_line(line("add", "table", "inet", "firewalld_policy_drop"))
    kw._on_kernel_line(rule_line("delete", 7))
    loop.run(0.05)
    assert kw.flushes.seen and "ip filter FORWARD -> cali-FORWARD" in kw.flushes.seen, "handle 8 still jumps"
    for handle in [8] + list(range(100, 3100)):
        kw._on_kernel_line(rule_line("delete", handle))
    loop.run(0.05)
    assert kw.flushes.seen == frozenset() and reads == []
    kw._on_kernel_line(line("delete", "table", "inet", "firewalld_policy_drop"))
    kw.end("reload")
    loop.run(5.0)
    assert reporter.kinds() == ["calico-flushed"] and reporter.events[0][2]["cause"] == "reload"
    assert kw.flushes.outages(), "the path is known broken until Felix is back"
    kw._on_kernel_line(rule_line("add", 9000, "cali-FORWARD"))  # Felix restores its jump
    loop.run(0.05)
    assert not kw.flushes.outages() and reads == []


def test_lost_events_and_a_canary_chain_still_read_or_follow():
    kw, loop, reporter, reads = long_watch()
    kw._on_kernel_line(line("add", "chain", "ip", "nat", "KUBE-PROXY-CANARY"))
    loop.run(0.05)
    assert "ip nat KUBE-PROXY-CANARY (chain)" in kw.flushes.seen and reads == []
    kw._on_kernel_line(line("delete", "chain", "ip", "nat", "KUBE-PROXY-CANARY"))
    loop.run(0.05)
    assert "ip nat KUBE-PROXY-CANARY (chain)" not in kw.flushes.seen
    kw._on_kernel_line("# ERROR: We lost some netlink events!")
    loop.run(0.05)
    assert len(reads) == 1, "lost events: everything read again, once"
