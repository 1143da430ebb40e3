"""Kernel-side events (`nft --json monitor`) in the lab: calfwd's table repaired whatever
removed or changed it, every flush of Felix's and kube-proxy's jumps reported once with its
cause, firewalld's own table reported missing, the monitor's death survived, and silence on
nodes whose Calico lives elsewhere (legacy iptables, Felix's native nftables table).

Every assertion is on state (the table's listing, the jumps, traffic) or on the events the
daemon logged; none on timing. `test_without_the_monitor_*` are the controls: the same steps
with kernel_events = false are not repaired and not reported.
"""

from __future__ import annotations

import random
import signal

import pytest

from lab import Lab
from lab.calfwd import Calfwd, minimal_config
from lab.calico import CalicoSim, load_nft_dataplane
from lab.kubeproxy import KubeProxySim
from lab.wait import quiet_for, settle, until_steady, wait_until


def listing(lab) -> str:
    return lab.node.run("nft", "list", "table", "inet", "calfwd", check=False).stdout


def monitor_pid(calfwd: Calfwd) -> int:
    """The `nft --json monitor` child of the daemon."""
    return int(wait_until(calfwd.monitor_pid, 10, "calfwd runs an nft monitor", interval=0.05))  # type: ignore[arg-type]


def settled(calfwd: Calfwd) -> None:
    """The monitor is up and has looked once (it reports nothing when nothing changed)."""
    calfwd.wait_monitor_listening()


@pytest.mark.parametrize("damage", [
    ("delete", "table", "inet", "calfwd"),
    ("flush", "table", "inet", "calfwd"),
    ("flush", "set", "inet", "calfwd", "masq4"),
    ("insert", "rule", "inet", "calfwd", "postrouting", "accept"),
    ("delete", "chain", "inet", "calfwd", "postrouting"),
], ids=["deleted", "flushed", "set-element", "rule-added", "chain-deleted"])
def test_own_table_is_repaired_whatever_changed(lab, damage):
    calfwd = Calfwd(lab)
    calfwd.start()
    settled(calfwd)
    before = listing(lab)
    assert "masquerade" in before
    mark = calfwd.line_count()
    if damage[1] == "chain":  # a chain with rules cannot be deleted alone: one transaction
        lab.node.run("nft", "-f", "-", input="flush chain inet calfwd postrouting\n"
                     + " ".join(damage) + "\n")
    else:
        lab.node.run("nft", *damage)
    line = calfwd.wait_for("table-repaired", after=mark, timeout=10)[0]
    assert "changed by someone else" in line
    assert listing(lab) == before, "byte for byte what calfwd had written"
    quiet_for(lambda: len(calfwd.events("table-repaired", after=mark)) == 1, 0.5, "its own write is no new repair")
    assert len(calfwd.events("table-repaired", after=mark)) == 1, "its own write is no new repair"
    assert lab.pod_reaches_proxy()


def test_no_loop_and_nothing_at_rest(lab):
    """calfwd's own writes come back on the monitor: they must plan nothing. Each SIGHUP here
    changes the pools, so calfwd rewrites its table itself every time."""
    calfwd = Calfwd(lab)
    lab.firewalld.start()
    calfwd.start()
    calfwd.wait_for("reconciled", count=2)  # and the one after the reload that created its zone
    settled(calfwd)
    for n, pool in enumerate(("198.19.0.0/16", lab.addr.pool_v4, "198.19.0.0/16", lab.addr.pool_v4)):
        calfwd.write_config(f'[calico]\nip_pools = ["{pool}", "{lab.addr.pool_v6}"]\nnat_outgoing = true\n')
        mark = calfwd.line_count()
        calfwd.signal(signal.SIGHUP)
        line = calfwd.wait_for("reconciled", after=mark)[0]
        assert "set pools4" in line, line  # calfwd itself rewrote its table
        assert pool in listing(lab)
    quiet_for(lambda: calfwd.events("table-repaired") == [] and calfwd.events("conflict", after=mark) == [], 1.0,
              "calfwd's own writes, back on the monitor, plan nothing")
    assert calfwd.events("table-repaired") == [] and calfwd.events("conflict", after=mark) == []


def test_flush_ruleset_in_the_node(lab):
    """nftables.service's `flush ruleset`: calfwd's table comes back, Felix's loss is reported
    as nobody's firewalld doing, and firewalld's own vanished table is reported (not touched)."""
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    calfwd.wait_for("reconciled", count=2)  # after the reload that created its zone
    settled(calfwd)
    lab.calico.restore()
    until_steady(calfwd.line_count, 1.5, 20, 'firewalld\'s last reload is long over, not "just finished"')
    before = listing(lab)
    mark = calfwd.line_count()
    lab.node.run("nft", "flush", "ruleset")
    calfwd.wait_for("table-repaired", after=mark, timeout=10)
    assert listing(lab) == before
    flushed = calfwd.wait_for("calico-flushed", after=mark, timeout=10)
    assert len(flushed) == 1 and "not during a firewalld start, reload or stop" in flushed[0]
    assert "cause=not-firewalld" in flushed[0]
    missing = calfwd.wait_for("firewalld-table-missing", after=mark, timeout=10)[0]
    assert "systemctl restart firewalld" in missing
    assert lab.node.run("nft", "list", "table", "inet", "firewalld", check=False).returncode != 0, \
        "calfwd never rebuilds firewalld's table"
    assert lab.pod_reaches_proxy(), "natOutgoing is calfwd's again"
    # firewalld 1.3.3's reload fails here (it cannot delete the missing table); a restart works.
    lab.firewalld.restart()
    calfwd.wait_for("firewalld-table-restored", after=mark, timeout=10)


FLUSH_ROUNDS = 10


def test_every_flush_is_reported_however_soon_after_felix_restored(lab):
    """Felix (and kube-proxy) restore 0, 0.2, ... 1.8 s before a reload, in a shuffled order:
    10 reports, each naming the reload and both owners. 0.1 saw only those older than a resync."""
    kube = KubeProxySim(lab.node)
    kube.install()
    calfwd = Calfwd(lab, minimal_config(lab) + "felix_refresh_interval = 90\n")
    calfwd.start()
    started = calfwd.line_count()
    lab.firewalld.start()
    if not lab.calico.present():  # firewalld <= 1.x: its start flushed them once
        calfwd.wait_for("calico-flushed")
    settled(calfwd)
    # calfwd's own reload (it creates its objects once firewalld runs) flushes too: a restore
    # before it is over was flushed by it and reported as one more flush (fresh clone at
    # 92c7021, under load: 11 reports for 10 reloads). Wait for the run after that reload.
    run = calfwd.wait_for("reconciled", after=started)[0]
    if "reload firewalld once" in run:
        wait_until(lambda: any("after firewalld-reloaded" in line
                               for line in calfwd.events("reconciled", after=started)), 30,
                   "calfwd's reconcile after its own firewalld reload")
    delays = [step / 5 for step in range(FLUSH_ROUNDS)]  # 0 to 1.8 s, every 0.2 s
    random.Random(9).shuffle(delays)
    mark = calfwd.line_count()
    for n, delay in enumerate(delays, 1):
        lab.calico.restore()
        kube.restore()
        settle(delay, "Felix and kube-proxy restore at a chosen moment 0-1.8 s before the reload")
        lab.firewalld.reload()
        if lab.calico.present():  # firewalld 2.x: no flush with the nftables backend, no report
            calfwd.wait_for("reconciled", after=mark, count=n)
            continue
        line = calfwd.wait_for("calico-flushed", after=mark, count=n, timeout=15)[-1]
        assert "flushed Calico's and kube-proxy's iptables rules on reload" in line, line
        assert "cluster DNS" in line and "within 90 s" in line
    flushes = 0 if lab.calico.present() else FLUSH_ROUNDS
    quiet_for(lambda: len(calfwd.events("calico-flushed", after=mark)) == flushes, 1.0, "each flush reported once")
    assert len(calfwd.events("calico-flushed", after=mark)) == flushes
    assert calfwd.events("kube-proxy-flushed") == []


def test_kube_proxy_alone_and_the_cause_of_a_stop(lab):
    kube = KubeProxySim(lab.node)
    kube.install()
    lab.firewalld.start()  # flushes Calico before calfwd runs: only kube-proxy comes back
    calfwd = Calfwd(lab)
    calfwd.start()
    settled(calfwd)
    kube.restore()
    settle(0.3, "calfwd's monitor sees kube-proxy's rules back before the stop (nothing is said)")
    mark = calfwd.line_count()
    lab.firewalld.stop()
    if kube.present():  # firewalld 2.x flushes nothing on stop: nothing to report
        quiet_for(lambda: calfwd.events("kube-proxy-flushed", after=mark) == [], 3.0, "a stop that flushes nothing")
        assert calfwd.events("kube-proxy-flushed", after=mark) == []
        return
    line = calfwd.wait_for("kube-proxy-flushed", after=mark, timeout=15)[0]
    assert "flushed kube-proxy's iptables rules on stop" in line and "NodePorts" in line
    assert "KUBE-PROXY-CANARY (chain)" in line
    assert calfwd.events("calico-flushed", after=mark) == []


def test_monitor_killed_comes_back(lab):
    calfwd = Calfwd(lab)
    calfwd.start()
    first = monitor_pid(calfwd)
    mark = calfwd.line_count()
    lab.node.run("kill", "-9", str(first))
    lost = calfwd.wait_for("kernel-events-lost", after=mark, timeout=10)[0]
    assert "was killed by signal 9" in lost and "resync every 60 s" in lost
    calfwd.wait_for("kernel-events-restored", after=mark, timeout=10)
    assert monitor_pid(calfwd) != first
    mark = calfwd.line_count()
    before = listing(lab)
    lab.node.run("nft", "delete", "table", "inet", "calfwd")
    calfwd.wait_for("table-repaired", after=mark, timeout=10)
    assert listing(lab) == before


def test_monitor_that_cannot_start_falls_back_to_the_resync(lab):
    calfwd = Calfwd(lab, minimal_config(lab) + "[daemon]\nresync_interval = 2\n")
    calfwd.env["CALFWD_NFT"] = "/nonexistent/nft"
    calfwd.start()
    line = calfwd.wait_for("kernel-events-lost")[0]
    assert "cannot start /nonexistent/nft" in line
    mark = calfwd.line_count()
    lab.node.run("nft", "delete", "table", "inet", "calfwd")
    calfwd.wait_for("reconciled", after=mark, timeout=10)  # the resync, not an event
    assert "masquerade" in listing(lab)
    assert calfwd.running and len(calfwd.events("kernel-events-lost")) == 1, "said once"


def test_without_the_monitor_nothing_is_repaired_or_seen_between_resyncs(lab):
    """The control: kernel_events = false is 0.1's behaviour, so the tests above can fail."""
    calfwd = Calfwd(lab, minimal_config(lab) + "[daemon]\nkernel_events = false\n")
    lab.firewalld.start()
    calfwd.start()
    calfwd.wait_for("reconciled", count=2)  # after the reload that created its zone
    mark = calfwd.line_count()
    lab.node.run("nft", "delete", "table", "inet", "calfwd")
    quiet_for(lambda: "masquerade" not in listing(lab), 2.0, "no repair without the monitor before the resync")
    assert "masquerade" not in listing(lab), "not repaired before the next resync (60 s)"
    lab.calico.restore()
    settle(0.5, "Felix's rules back a while before the reload (unseen without the monitor)")
    lab.firewalld.reload()  # its reconcile repairs the table, but sees no flush
    calfwd.wait_for("reconciled", after=mark)
    quiet_for(lambda: calfwd.events("table-repaired", after=mark) == []
              and calfwd.events("calico-flushed", after=mark) == [], 2.0, "without the monitor nothing is seen")
    assert calfwd.events("table-repaired", after=mark) == []
    assert calfwd.events("calico-flushed", after=mark) == []


@pytest.mark.parametrize("dataplane", ["legacy", "nftables"])
def test_no_report_where_calico_is_not_in_the_nft_tables(tmp_path, dataplane):
    from lab import unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with Lab(tmp_path, calico=False) as lab:
        if dataplane == "legacy":
            lab.calico = CalicoSim(lab.node, (lab.addr.pool_v4,), (lab.addr.pool_v6,), (lab.workload,),
                                   variant="legacy")
            lab.calico.install()
        else:
            load_nft_dataplane(lab.node)
        calfwd = Calfwd(lab)
        calfwd.start()
        settled(calfwd)
        lab.firewalld.start()
        calfwd.wait_for("reconciled", count=2)
        lab.firewalld.reload()
        lab.firewalld.stop()
        calfwd.wait_for("firewalld-vanished")
        quiet_for(lambda: calfwd.events("calico-flushed") == [] and calfwd.events("kube-proxy-flushed") == [], 2.5,
                  "nothing of Calico's in the nft tables: nothing to report")
        assert calfwd.events("calico-flushed") == [] and calfwd.events("kube-proxy-flushed") == []
        if dataplane == "legacy":
            assert lab.calico.present(), "firewalld's flush never reached legacy x_tables"
        else:
            assert lab.node.run("nft", "list", "table", "ip", "calico").returncode == 0
