"""Every path through a two-node Calico cluster after every firewalld and calfwd step.

    /usr/bin/python3 tests/cluster_matrix.py --encap vxlan --uplink unbound --zone public
    /usr/bin/python3 tests/cluster_matrix.py --all --markdown tests/CLUSTER-MATRIX.md
    /usr/bin/python3 tests/cluster_matrix.py --all --firewalld 0.9.3,2.3   # Debian 11's, 13's
    /usr/bin/python3 tests/cluster_matrix.py --all --cni canal,flannel --firewalld all

Builds the lab's Cluster (tests/lab/cluster.py) for each combination asked for, measures
every path with no firewalld (paths.baseline, on a cluster of its own), then runs
paths.matrix() on a fresh one (calfwd on both nodes with the minimal config, unless --no-calfwd), prints
each matrix as a Markdown table and writes all results as JSON. As root, in namespaces only.
It reports; the tests in tests/integration/test_cluster.py assert.

--cni picks the clusters: calico (the default: the encapsulations and dataplanes above),
canal (RKE2) and flannel (k3s), or all. Canal and flannel always run flannel's VXLAN with
calfwd on the one-line config; with --all, uplink bound/unbound x default zone public/drop.
Their paths are paths.FLANNEL_PATHS: no BGP, and each pod's hostPort (portmap's DNAT).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from lab import unavailable, versions  # noqa: E402
from lab.cluster import CNIS, DATAPLANES, UPLINKS, Cluster  # noqa: E402
from lab.encap import ENCAPSULATIONS  # noqa: E402
from lab.paths import StepResult, baseline, matrix  # noqa: E402

ZONES = ("public", "drop")
LEGEND = ("Each path is a new TCP connection that must succeed within %s s. Columns: no firewalld "
          "(a cluster of its own), then each step on both nodes of a fresh cluster, in order. \"ok\" "
          "or \"FAIL\": right after the step and again after Felix's and kube-proxy's resync "
          "(and flannel's, on Canal and flannel); "
          "\"FAIL → ok\": only the second round passed (the resync repaired it, or a flow the first "
          "round left in conntrack let it in).")


def table(results: List[StepResult]) -> str:
    """Paths as rows (those the cluster's CNI has), steps as columns."""
    head = "| path | " + " | ".join(r.step for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for name, _ in results[0].cells:
        lines.append("| %s | %s |" % (name, " | ".join(r.cell(name).text for r in results)))
    return "\n".join(lines)


def run_one(encap: str, dataplane: str, uplink: str, zone: str, calfwd: bool, within: float,
            firewalld: str = versions.OWN, cni: str = "calico") -> dict:
    started = time.monotonic()
    params = dict(encap=encap, dataplane=dataplane, uplink=uplink, zone=zone, calfwd=calfwd,
                  firewalld=firewalld, cni=cni)
    with Cluster(**params) as cluster:
        results = [baseline(cluster, within)]
    with Cluster(**params) as cluster:
        results += matrix(cluster, within=within, log=lambda msg: print("  " + msg, file=sys.stderr))
        described = cluster.describe()
        version = cluster.node1.firewalld.firewall_cmd("--version").strip()  # the daemon's own word
    return {
        "cni": cni, "encap": encap, "dataplane": dataplane, "uplink": uplink, "zone": zone, "calfwd": calfwd,
        "described": described, "firewalld": version, "seconds": round(time.monotonic() - started, 1),
        "steps": [{"step": r.step, "paths": {name: {"now": c.now, "after_resync": c.resynced}
                                             for name, c in r.cells}} for r in results],
        "markdown": table(results),
    }


NAMES = {"canal": "Canal (RKE2), flannel's VXLAN", "flannel": "flannel (k3s), VXLAN, bridge cni0"}


def title(run: dict) -> str:
    what = NAMES.get(run.get("cni", "calico")) or run["described"].split(" dataplane=")[0].replace(
        "cni=calico encap=", "").replace("encap=", "")
    return "%s, uplink %s, default zone %s, %s%s" % (
        what + ("" if run["dataplane"] == "iptables" else " (Felix nftables dataplane)"),
        run["uplink"], run["zone"], run["firewalld"].replace("\n", " "), "" if run["calfwd"] else ", no calfwd")


def parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cni", default="calico",
                        help="comma-separated: %s, or all (Canal and flannel: flannel's VXLAN, every "
                             "uplink x zone with --all)" % ", ".join(CNIS))
    parser.add_argument("--encap", choices=[e for e in ENCAPSULATIONS if e != "flannel"], default="vxlan",
                        help="Calico's encapsulation (Canal and flannel always use flannel's VXLAN)")
    parser.add_argument("--dataplane", choices=DATAPLANES, default="iptables")
    parser.add_argument("--uplink", choices=UPLINKS, default="unbound")
    parser.add_argument("--zone", choices=ZONES, default="public")
    parser.add_argument("--no-calfwd", action="store_true", help="firewalld alone, for comparison")
    parser.add_argument("--all", action="store_true",
                        help="every encap x uplink x zone (iptables dataplane), plus VXLAN on Felix's "
                             "nftables dataplane bound and unbound")
    parser.add_argument("--firewalld", default=versions.OWN,
                        help="comma-separated: own (the machine's), %s, or all (Debian's packages, "
                             "fetched by tests/lab/versions.py)" % ", ".join(versions.RELEASES))
    parser.add_argument("--within", type=float, default=1.0, help="seconds each path gets (default 1)")
    parser.add_argument("--json", type=Path, default=Path("build/cluster-matrix.json"))
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    names = [versions.OWN, *versions.RELEASES] if args.firewalld == "all" else args.firewalld.split(",")
    unknown = [n for n in names if n != versions.OWN and n not in versions.RELEASES]
    if unknown:
        parser.error("--firewalld %s: unknown (use own, %s or all)" % (",".join(unknown), ", ".join(versions.RELEASES)))
    cnis = list(CNIS) if args.cni == "all" else args.cni.split(",")
    if [c for c in cnis if c not in CNIS]:
        parser.error("--cni %s: unknown (use %s or all)" % (args.cni, ", ".join(CNIS)))
    args.cni = [c for c in CNIS if c in cnis]
    own = versions.own().version
    args.firewalld = list(dict.fromkeys(versions.OWN if versions.is_release(n, own) else n for n in names))
    if args.dataplane == "nftables" and args.encap != "vxlan":
        parser.error("--dataplane nftables: Felix's nftables dump is a VXLAN node's; use --encap vxlan")
    if not 0.2 <= args.within <= 30:
        parser.error("--within %s: must be between 0.2 and 30 seconds" % args.within)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    reason = unavailable()
    if reason:
        print("cluster_matrix: %s" % reason, file=sys.stderr)
        return 1
    combos = []
    for cni in args.cni:
        if cni != "calico":
            combos += [(cni, "flannel", "iptables", u, z) for u, z in (
                itertools.product(UPLINKS, ZONES) if args.all else [(args.uplink, args.zone)])]
        elif args.all:
            combos += [(cni, e, "iptables", u, z) for e, u, z in itertools.product(
                [e for e in ENCAPSULATIONS if e != "flannel"], UPLINKS, ZONES)]
            combos += [(cni, "vxlan", "nftables", u, "public") for u in UPLINKS]
        else:
            combos.append((cni, args.encap, args.dataplane, args.uplink, args.zone))
    report = {"date": datetime.date.today().isoformat(), "within_seconds": args.within, "runs": []}
    sections = []
    for firewalld, (cni, encap, dataplane, uplink, zone) in itertools.product(args.firewalld, combos):
        print("cluster: cni=%s encap=%s dataplane=%s uplink=%s zone=%s firewalld=%s" % (
            cni, encap, dataplane, uplink, zone, firewalld), file=sys.stderr)
        run = run_one(encap, dataplane, uplink, zone, not args.no_calfwd, args.within, firewalld, cni)
        report["runs"].append(run)
        section = "### %s\n\n%s\n" % (title(run), run["markdown"])
        sections.append(section)
        print(section, flush=True)
    report["firewalld"] = ", ".join(sorted({run["firewalld"] for run in report["runs"]}))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        head = "firewalld %s, measured %s\n\n%s\n\n" % (report["firewalld"], report["date"], LEGEND % args.within)
        args.markdown.write_text(head + "\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
