"""What firewalld 2.x's ReloadPolicy costs pods, a section of bench/run.py (`--sections
reloadpolicy`; issue 22).

firewalld >= 2.1 puts table inet firewalld_policy_drop in place for the duration of every reload;
its forward chain accepts established flows and applies ReloadPolicy's FORWARD verdict to new
ones (stock: DROP). `FORWARD:ACCEPT` keeps new forwarded connections flowing during a reload,
at the cost of no forward filtering by firewalld for that time (docs/doctor-and-flush-guard.md).
Two rows side by side in one run, each a fresh lab on firewalld 2.3 (Debian trixie's, from
tests/lab/versions.py) with calfwd running (permanent, default config): the stock policy, then
FORWARD:ACCEPT; new connections per second from the pod (forwarded, natOutgoing) and from the
host itself, lost per reload (the outage section's probers and attribution). calfwd never sets
ReloadPolicy; this lets users weigh the option with numbers.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from lab import Lab
from lab import versions

ROWS = (
    ("stock", "ReloadPolicy unset (firewalld's default: INPUT:DROP,FORWARD:DROP,OUTPUT:DROP)", ""),
    ("forward-accept", "ReloadPolicy=INPUT:DROP,FORWARD:ACCEPT,OUTPUT:DROP", "INPUT:DROP,FORWARD:ACCEPT,OUTPUT:DROP"),
)


def bench_reload_policy(p: Dict[str, Any], outage_row: Callable[..., Dict[str, Any]],
                        setup_permanent: Callable[[Lab], Any], log: Callable[[str], None]) -> Dict[str, Any]:
    build = versions.fetch("2.3")
    log(f"reloadpolicy: firewalld {build.version}")
    rows = []
    for key, name, policy in ROWS:
        def setup(lab: Lab, policy: str = policy) -> Any:
            if policy:
                lab.firewalld.configure(ReloadPolicy=policy)
            return setup_permanent(lab)
        rows.append(outage_row(key, name, setup, dict(p, restarts=0), lab_factory=lambda: Lab(firewalld=build)))
    return {"firewalld": build.version, "rate_per_prober": p["rate"], "reloads": p["reloads"], "rows": rows}


def markdown(r: Dict[str, Any]) -> list:
    out = [f"**ReloadPolicy** (firewalld {r['firewalld']}, calfwd running): new connections lost per "
           f"reload, {r['rate_per_prober']:.0f} new connections/s per prober, {r['reloads']} reloads "
           "(median per reload, total over the run):", "",
           "| ReloadPolicy | pod per reload | host per reload | pod total | host total |",
           "|---|---|---|---|---|"]
    for row in r["rows"]:
        pod, host = row["pod"], row["host"]
        out.append("| {} | {} | {} | {} of {} | {} of {} |".format(
            row["name"], pod.get("per_reload", {}).get("median", "-"), host.get("per_reload", {}).get("median", "-"),
            pod["failed"], pod["attempts"], host["failed"], host["attempts"]))
    out.append("")
    return out
