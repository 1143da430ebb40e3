"""calfwd's layers with N pools, timed in-process (run in the lab's node namespace, as root).

    scale.py N [--sources]

Pools: N=1 is the lab's pool; otherwise half IPv4 /29s from 198.19.0.0/16 and half IPv6 /64s
from 2001:db8:1::/48 (documentation ranges, never routed anywhere), all natOutgoing.
--sources also sets [firewalld] trust_pool_sources = true (each pool becomes a zone source).

Prints one JSON object (times in ms, time.perf_counter):
  parse_ms         config text -> Config (validation included)
  nft_create_ms    table absent: read + plan + apply (one transaction)
  nft_noop_ms      table as wanted: read + plan (what every reconcile pays)
  nft_change_ms    one pool replaced: read + plan + apply
  rules, set_elements   what `list table` shows after the apply
  fw_create_ms     firewalld layer from nothing (zone, policies, one reload), when firewalld runs
  reconcile_noop_ms, reconcile_nft_ms   a whole Reconciler.reconcile with nothing to do
"""

import dataclasses
import ipaddress
import json
import sys
import time

import dbus

from calfwd.config import parse
from calfwd.desired import desired
from calfwd import drivers
from calfwd.plan.firewalld import online as fw_plan
from calfwd.plan.firewalld import cleanup as firewalld_cleanup
from calfwd.plan import nftables as nft_plan
from calfwd.reconcile import Reconciler

LAB_POOL = "198.18.64.0/20"


def pools(n):
    if n == 1:
        return [LAB_POOL]
    out = []
    for i in range(n):
        k = i // 2
        if i % 2 == 0:
            out.append(f"198.19.{k // 32}.{(k % 32) * 8}/29")
        else:
            out.append(f"2001:db8:1:{k:x}::/64")
    return out


def config_text(cidrs, sources):
    text = "[calico]\nip_pools = [%s]\nnat_outgoing = true\n" % ", ".join(f'"{c}"' for c in cidrs)
    if sources:
        text += "[firewalld]\ntrust_pool_sources = true\n"
    return text


def ms(start):
    return round((time.perf_counter() - start) * 1000, 3)


def main():
    n = int(sys.argv[1])
    sources = "--sources" in sys.argv[2:]
    cidrs = pools(n)
    out = {"pools": n, "trust_pool_sources": sources}

    t = time.perf_counter()
    config = parse(config_text(cidrs, sources), "<bench>")
    out["parse_ms"] = ms(t)

    nft = drivers.nft_driver()
    want = desired(config).nft
    if nft.read_table(want.family, want.table) is not None:
        nft.run(nft_plan.delete_batch(want.family, want.table))

    t = time.perf_counter()
    plan = nft_plan.plan(want, nft.read_table(want.family, want.table))
    nft.run(plan.batch)
    out["nft_create_ms"] = ms(t)

    t = time.perf_counter()
    plan = nft_plan.plan(want, nft.read_table(want.family, want.table))
    out["nft_noop_ms"] = ms(t)
    assert plan.empty, plan.reasons

    listing = nft.read_table(want.family, want.table)
    out["rules"] = sum(1 for o in listing if "rule" in o)
    out["set_elements"] = sum(len(o["set"].get("elem", [])) for o in listing if "set" in o)

    # One pool replaced by another (not parsed again: at 10000 pools parsing is the slow part).
    other = ipaddress.ip_network("198.18.128.0/20")
    changed = dataclasses.replace(want, pools4=want.pools4[:-1] + (other,), masq4=want.masq4[:-1] + (other,))
    t = time.perf_counter()
    plan = nft_plan.plan(changed, nft.read_table(changed.family, changed.table))
    nft.run(plan.batch)
    out["nft_change_ms"] = ms(t)
    nft.run(nft_plan.plan(want, nft.read_table(want.family, want.table)).batch)  # back

    try:
        fw = drivers.firewalld_driver(timeout=120.0, reload_timeout=600.0)
        running = fw.state() == "RUNNING"
    except dbus.exceptions.DBusException:
        fw, running = None, False
    out["firewalld_running"] = running
    if running:
        facts = fw.facts()
        fw_want = desired(config, facts).firewalld
        t = time.perf_counter()
        fw.apply(fw_plan.plan(fw_want, fw.read(fw_want)))
        out["fw_create_ms"] = ms(t)
        reconciler = Reconciler(nft, fw)
        outcome = reconciler.reconcile(config, "bench")
        assert outcome.verified and not outcome.errors, (outcome.errors, outcome.layers)
        outcome = reconciler.reconcile(config, "bench")  # the steady state
        assert outcome.verified and outcome.changes == 0, outcome.layers
        out["reconcile_noop_ms"] = round(outcome.duration * 1000, 3)
        out["reconcile_nft_ms"] = round(outcome.nft_duration * 1000, 3)
        t = time.perf_counter()
        fw.apply(firewalld_cleanup.cleanup_plan(fw_want, fw.read(fw_want)))
        out["fw_cleanup_ms"] = ms(t)
    nft.run(nft_plan.delete_batch(want.family, want.table))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
