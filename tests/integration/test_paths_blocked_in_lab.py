"""The verdict is "blocked" whenever something calfwd can see shuts a Calico path, and "ok" again
once it is undone (issue 19): panic mode, the pod's veth or a pool bound to a zone that drops,
forwarding off, a policy that outranks calfwd's and rejects, calfwd's table gone while its
repairs are paused. Each is made on a running node and must reach the daemon's health file
(what node-problem-detector reads) within 2 s of being made and of being undone, with
`calfwd status` exiting 1 while it lasts. The pod's egress is probed too: the verdict is
only true if the traffic really stops.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from lab.calfwd import Calfwd, minimal_config
from lab.wait import quiet_for, wait_until

VERDICT_WITHIN = 2.0  # seconds: the promise, from the change to the health file


def health(calfwd: Calfwd) -> str:
    path = Path(calfwd.env["CALFWD_RUN_DIR"]) / "health"
    return path.read_text() if path.exists() else ""


def started(lab, extra: str = "") -> Calfwd:
    """A node in sync: firewalld, calfwd (no guard: its warning is not what is judged here),
    Felix's rules back after calfwd's first reload, traffic flowing."""
    lab.firewalld.start()
    calfwd = Calfwd(lab, minimal_config(lab) + "[firewalld]\nflush_guard = false\n" + extra)
    calfwd.start()
    lab.calico.restore()
    wait_until(lambda: health(calfwd).startswith("ok "), 10, "ok before anything is made")
    assert calfwd.cli("status").returncode == 0
    assert lab.pod_reaches_proxy(within=3.0)
    return calfwd


def blocked_then_ok(lab, calfwd: Calfwd, make, undo, names: str, egress_blocked: bool = True) -> None:
    make()
    # (A firewalld reload on 1.x also flushes Felix for a moment: wait for this very reason.)
    wait_until(lambda: health(calfwd).startswith("blocked ") and names in health(calfwd),
               VERDICT_WITHIN, f"the health file to say blocked ({names})")
    status = calfwd.cli("status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert any(l.startswith(("paths: BLOCKED: ", "kernel: BLOCKED: ")) and names in l
               for l in status.stdout.splitlines()), status.stdout
    doc = json.loads((Path(calfwd.env["CALFWD_RUN_DIR"]) / "status.json").read_text())
    assert doc["state"] == "blocked" and doc["in_sync"] is False
    assert calfwd.events("path-blocked"), "said in the journal"
    if egress_blocked:
        assert not lab.pod_reaches_proxy(within=1.0), "the verdict says blocked: traffic must really stop"
    undo()
    wait_until(lambda: health(calfwd).startswith("ok "), VERDICT_WITHIN, f"ok again once undone ({names})")
    assert calfwd.cli("status").returncode == 0
    assert lab.pod_reaches_proxy(within=3.0)
    assert calfwd.events("path-unblocked")


def test_panic_mode(lab):
    calfwd = started(lab)
    fw = lab.firewalld
    blocked_then_ok(lab, calfwd, lambda: fw.firewall_cmd("--panic-on"), lambda: fw.firewall_cmd("--panic-off"),
                    "panic mode")


def test_the_pods_veth_bound_by_name_to_zone_drop(lab):
    calfwd = started(lab)
    fw, veth = lab.firewalld, lab.workload.iface
    blocked_then_ok(lab, calfwd, lambda: fw.firewall_cmd("--zone=drop", f"--add-interface={veth}"),
                    lambda: fw.firewall_cmd("--zone=drop", f"--remove-interface={veth}"), veth)


def test_a_pool_bound_as_a_source_to_zone_drop(lab):
    calfwd = started(lab)
    fw, pool = lab.firewalld, lab.addr.pool_v4
    blocked_then_ok(lab, calfwd, lambda: fw.firewall_cmd("--zone=drop", f"--add-source={pool}"),
                    lambda: fw.firewall_cmd("--zone=drop", f"--remove-source={pool}"), f"source {pool}")


def test_forwarding_off(lab):
    calfwd = started(lab)
    blocked_then_ok(lab, calfwd, lambda: lab.node.sysctl("net.ipv4.ip_forward", 0),
                    lambda: lab.node.sysctl("net.ipv4.ip_forward", 1), "net.ipv4.ip_forward = 0")


def test_a_policy_that_outranks_calfwds_and_rejects(lab):
    calfwd = started(lab)
    fw = lab.firewalld

    def reload_and_felix() -> None:  # firewalld <= 1.x flushes Felix on reload: Felix's refresh
        fw.reload()
        lab.calico.restore()

    def make() -> None:
        fw.firewall_cmd("--permanent", "--new-policy=lockdown")
        for arg in ("--set-target=REJECT", "--set-priority=-100", "--add-ingress-zone=ANY", "--add-egress-zone=ANY"):
            fw.firewall_cmd("--permanent", "--policy=lockdown", arg)
        reload_and_felix()

    def undo() -> None:
        fw.firewall_cmd("--permanent", "--delete-policy=lockdown")
        reload_and_felix()

    blocked_then_ok(lab, calfwd, make, undo, "policy 'lockdown'")


RICH = 'rule family="ipv4" destination address="0.0.0.0/0" reject'


def test_a_continue_policy_whose_rich_rule_rejects(lab):
    """A baseline's policy with target CONTINUE but a rich rule that rejects every IPv4
    destination: the rule runs before calfwd's policies exactly like a REJECT target."""
    calfwd = started(lab)
    fw = lab.firewalld

    def reload_and_felix() -> None:
        fw.reload()
        lab.calico.restore()

    def make() -> None:
        fw.firewall_cmd("--permanent", "--new-policy=audit-only")
        for arg in ("--set-priority=-100", "--add-ingress-zone=ANY", "--add-egress-zone=ANY",
                    '--add-rich-rule=' + RICH):
            fw.firewall_cmd("--permanent", "--policy=audit-only", arg)
        reload_and_felix()

    def undo() -> None:
        fw.firewall_cmd("--permanent", "--delete-policy=audit-only")
        reload_and_felix()

    blocked_then_ok(lab, calfwd, make, undo, f"rich rule '{RICH}' rejects")


def test_calfwds_table_gone_while_its_repairs_are_paused(lab):
    """Someone deletes calfwd's table in a loop until the repair brake engages, then once more:
    natOutgoing is gone until the next reconcile, and the verdict says so at once. A reload of
    calfwd (SIGHUP, `systemctl reload calfwd`) puts it back and the verdict follows."""
    calfwd = started(lab, "[daemon]\nresync_interval = 3600\n")
    lab.calico.remove_nat_outgoing()  # as after a 1.x reload: pod egress rests on calfwd's table alone
    assert lab.pod_reaches_proxy(within=3.0)
    mark = calfwd.line_count()
    for _ in range(40):
        lab.node.run("nft", "delete", "table", "inet", "calfwd", check=False)
        wait_until(lambda: lab.node.run("nft", "list", "table", "inet", "calfwd", check=False).returncode == 0
                   or any("stops repairing" in e for e in calfwd.events("conflict", after=mark)), 5,
                   "a repair, or the brake")
        if any("stops repairing" in e for e in calfwd.events("conflict", after=mark)):
            break
    else:
        pytest.fail("the repair brake never engaged")

    def make() -> None:
        lab.node.run("nft", "delete", "table", "inet", "calfwd", check=False)

    blocked_then_ok(lab, calfwd, make, lambda: calfwd.signal(signal.SIGHUP), "is missing and calfwd has paused")


def test_panic_mode_and_a_dropping_binding_on_each_firewalld(lab_versions):
    """firewalld 0.9 to 2.x (and the iptables backend) send the same runtime signals and answer
    the same reads; which binding wins differs, and the verdict follows what firewalld really
    does: 0.9 and 1.x ask the latest binding first, 2.x sorts zones by name ('block' before
    'calfwd' before 'drop'), so on 2.x a veth bound by name to 'drop' stays in calfwd's zone."""
    lab = lab_versions
    calfwd = started(lab)
    fw, veth = lab.firewalld, lab.workload.iface
    blocked_then_ok(lab, calfwd, lambda: fw.firewall_cmd("--panic-on"), lambda: fw.firewall_cmd("--panic-off"),
                    "panic mode")
    blocked_then_ok(lab, calfwd, lambda: fw.firewall_cmd("--zone=block", f"--add-interface={veth}"),
                    lambda: fw.firewall_cmd("--zone=block", f"--remove-interface={veth}"), veth)
    if lab.firewalld.build.major < 2:
        blocked_then_ok(lab, calfwd, lambda: fw.firewall_cmd("--zone=drop", f"--add-interface={veth}"),
                        lambda: fw.firewall_cmd("--zone=drop", f"--remove-interface={veth}"), veth)
        return
    fw.firewall_cmd("--zone=drop", f"--add-interface={veth}")
    quiet_for(lambda: health(calfwd).startswith("ok "), VERDICT_WITHIN, "the verdict stays ok on 2.x")
    assert lab.pod_reaches_proxy(within=3.0), "calfwd's zone still judges the veth: traffic flows"
    assert calfwd.cli("status").returncode == 0
