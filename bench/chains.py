"""What a change in a watched base chain costs calfwd (issue 19), a section of bench/run.py
(`--sections chains`).

calfwd follows `nft --json monitor`; the base chains holding Felix's and kube-proxy's top-level
jumps (ip filter FORWARD, ...) are watched so that a flush is seen at once. Other writers put
their rules there too (a host firewall, Docker, an operator), and a chain can hold thousands.
One lab per size (firewalld running, Felix's and kube-proxy's rules loaded, calfwd with the
default config); once calfwd runs, Felix's rules are restored and `ip filter FORWARD` gets N
filler rules (one transaction).
Then a writer adds a rule to FORWARD and deletes it again, each its own transaction, `rate` per
second: calfwd's CPU (its threads plus its nft monitor child, schedstat) and RSS before and
after. Per change = CPU spent / changes made. The sizes run side by side in one run.
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List

from lab import Lab
from lab.kubeproxy import KubeProxySim

import kernel

PYTHON = "/usr/bin/python3"

# In the node namespace: N filler rules at the end of ip filter FORWARD (no verdict: they only count).
FILL = r"""
import sys, nftables
n = int(sys.argv[1])
rule = lambda i: {"add": {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "expr": [
    {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
               "right": "198.19.%d.%d" % (200 + i // 250, i % 250 + 1)}}, {"counter": None}]}}}
rc, _out, err = nftables.Nftables().json_cmd({"nftables": [rule(i) for i in range(n)]})
assert rc == 0, err
"""

# In the node namespace: add a rule to FORWARD, delete it again (by the handle nft echoes),
# `rate` changes per second for `seconds`.
CHANGES = r"""
import json, sys, time, nftables
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
nft = nftables.Nftables()
nft.set_echo_output(True)
nft.set_handle_output(True)
ref = {"family": "ip", "table": "filter", "chain": "FORWARD"}
start, n, handle = time.monotonic(), 0, None
while time.monotonic() - start < seconds:
    if handle is None:
        rc, out, err = nft.json_cmd({"nftables": [{"add": {"rule": dict(ref, expr=[{"counter": None}])}}]})
        assert rc == 0, err
        handle = out["nftables"][0]["add"]["rule"]["handle"]
    else:
        rc, _out, err = nft.json_cmd({"nftables": [{"delete": {"rule": dict(ref, handle=handle)}}]})
        assert rc == 0, err
        handle = None
    n += 1
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
print(json.dumps({"changes": n, "seconds": time.monotonic() - start}))
"""


def forward_rules(lab: Lab) -> int:
    out = lab.node.run("nft", "-j", "list", "chain", "ip", "filter", "FORWARD").stdout
    return sum(1 for o in json.loads(out)["nftables"] if "rule" in o)


def bench_chains(p: Dict[str, Any], daemon_cls: Any, base_config: Any, log: Any, wait_cpu_quiet: Any) -> Dict[str, Any]:
    rows: List[Dict[str, Any]] = []
    for filler in p["chain_rules"]:
        with Lab() as lab:
            lab.firewalld.start()
            KubeProxySim(lab.node).install()
            daemon = daemon_cls(lab, base_config(lab), name=f"chains-{filler}")
            daemon.wait_line(r"^calfwd\[reconciled\]")
            daemon.settle(quiet=2.0)
            wait_cpu_quiet(daemon)
            rss_start = daemon.memory_kb()["VmRSS"]  # before the long chain exists
            lab.calico.restore()  # the reload that created calfwd's zone flushed Felix's rules
            lab.node.run(PYTHON, "-c", FILL, str(filler), timeout=300)
            rules = forward_rules(lab)
            daemon.settle(quiet=2.0)
            wait_cpu_quiet(daemon)
            pid = daemon.proc.pid
            rss0 = daemon.memory_kb()["VmRSS"]
            own0, child0 = daemon.cpu_seconds(), kernel.children_cpu_seconds(pid)
            mark = time.monotonic()
            log(f"chains: FORWARD with {rules} rules, {p['chain_rate']:g} changes/s for {p['chain_seconds']:g} s")
            done = json.loads(lab.node.run(PYTHON, "-c", CHANGES, str(p["chain_rate"]), str(p["chain_seconds"]),
                                           timeout=900).stdout)
            wait_cpu_quiet(daemon)
            own1, child1 = daemon.cpu_seconds(), kernel.children_cpu_seconds(pid)
            mem = daemon.memory_kb()
            n = done["changes"]
            rows.append({
                "filler_rules": filler, "forward_rules": rules, "changes": n,
                "seconds": round(done["seconds"], 1),
                "cpu_us_per_change": round(((own1 - own0) + (child1 - child0)) / n * 1e6, 1),
                "calfwd_us_per_change": round((own1 - own0) / n * 1e6, 1),
                "monitor_us_per_change": round((child1 - child0) / n * 1e6, 1),
                "cpu_share_of_a_core": round(((own1 - own0) + (child1 - child0)) / done["seconds"], 4),
                "rss_start_mb": round(rss_start / 1024, 1), "rss_before_mb": round(rss0 / 1024, 1), "rss_after_mb": round(mem["VmRSS"] / 1024, 1),
                "rss_growth_mb": round((mem["VmRSS"] - rss0) / 1024, 1), "rss_peak_mb": round(mem["VmHWM"] / 1024, 1),
                "monitor_rss_mb": kernel.children_rss_mb(pid),
                "flush_reports": sum(1 for t, line in daemon.lines if t >= mark and "-flushed]" in line),
                "calfwd_alive": daemon.proc.poll() is None,
            })
            daemon.stop()
    return {"rate": p["chain_rate"], "rows": rows}


def markdown(c: Dict[str, Any]) -> List[str]:
    out = [f"**A change in a watched base chain** (`ip filter FORWARD`; add a rule, delete it, "
           f"{c['rate']:g} changes/s, each its own transaction; calfwd's threads plus its nft monitor):", "",
           "| rules in FORWARD | changes | CPU per change: calfwd + nft | share of a core "
           "| RSS: started -> chain filled -> after the changes (peak) |",
           "|---|---|---|---|---|"]
    for row in c["rows"]:
        out.append(f"| {row['forward_rules']} | {row['changes']} | {row['cpu_us_per_change']} µs "
                   f"({row['calfwd_us_per_change']} + {row['monitor_us_per_change']}) | {row['cpu_share_of_a_core']} "
                   f"| {row['rss_start_mb']} -> {row['rss_before_mb']} -> {row['rss_after_mb']} MB ({row['rss_peak_mb']} MB) |")
    out.append("")
    return out
