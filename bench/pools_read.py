"""ip_pools = "auto" with N members in Felix's sets, timed in-process (run in a lab namespace,
as root; it creates `table ip calico` there).

    pools_read.py N

Felix's nftables dataplane: cali40all-ipam-pools and cali40masq-ipam-pools in `ip calico`,
each holding N IPv4 /24s from 10.0.0.0/8 (N = 10: a cluster's handful of pools; N = 4000: the
hostile review's case). Prints one JSON object (times in ms, time.perf_counter, median of 5):
  read_ms      drivers/felixsets.read: every pool set listed through libnftables
  resolve_ms   pools.resolve: members -> pools (or, above pools.MAX_MEMBERS, an unreadable read)
  describe_ms  PoolState.describe, the line the journal and the CLI show
  merge_ms     the merge alone (pools._collapse) of all 2N networks, never capped: O(n log n)
  outcome      how many pools resolved, or the problem
"""

import json
import statistics
import sys
import time

import nftables

from calfwd.judge import pools
from calfwd.drivers import felixsets
from calfwd.drivers.nftables import Nftables


def members(n):
    return [{"prefix": {"addr": f"10.{i // 256}.{i % 256}.0", "len": 24}} for i in range(n)]


def load(n):
    nft = nftables.Nftables()
    cmds = [{"add": {"table": {"family": "ip", "name": "calico"}}}]
    for name in ("cali40all-ipam-pools", "cali40masq-ipam-pools"):
        cmds.append({"add": {"set": {"family": "ip", "table": "calico", "name": name, "type": "ipv4_addr",
                                     "flags": ["interval"]}}})
        cmds.append({"add": {"element": {"family": "ip", "table": "calico", "name": name, "elem": members(n)}}})
    rc, _out, err = nft.json_cmd({"nftables": cmds})
    assert rc == 0, err


def timed(fn, repeat=5):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 3), result


def main(n):
    load(n)
    driver = Nftables()
    read_ms, found = timed(lambda: felixsets.read(driver))
    resolve_ms, state = timed(lambda: pools.resolve(found))
    describe_ms, _line = timed(state.describe)
    nets = [pools._networks(m, 4)[0] for name in found.sets for m in found.sets[name]]
    merge_ms, merged = timed(lambda: pools._collapse(nets))
    print(json.dumps({"members": n, "read_ms": read_ms, "resolve_ms": resolve_ms, "describe_ms": describe_ms,
                      "merge_ms": merge_ms, "merged": len(merged), "pools": len(state.pools),
                      "outcome": state.problem or f"{len(state.pools)} pools"}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
