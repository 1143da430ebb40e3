"""Soak: calfwd running through many firewalld reloads, restarts and SIGKILLs.

After every disturbance calfwd must still run and a *new* pod -> proxy connection must work
within a second (lab.pod_reaches_proxy); after restarts and kills the peer -> pod path too.
At the end nothing calfwd makes is duplicated or changed (nft table, zone and policies,
runtime and permanent, their files), and calfwd's open file descriptors and RSS are flat after
warm-up: fds equal, RSS growth under RSS_GROWTH_LIMIT. Those are behaviour (leaks), not timing.

Counts: CI runs a reduced soak (15 reloads, 3 restarts, 2 kills, well under 90 s). The full
soak (300 reloads, 20 restarts, 5 kills) is `make soak`, i.e. CALFWD_SOAK=full. Any count can be
set with CALFWD_SOAK=reloads,restarts,kills (e.g. CALFWD_SOAK=50,5,2).
"""

from __future__ import annotations

import os
from typing import List, Tuple

from lab.calfwd import Calfwd, footprint
from lab.wait import until_steady

CI = (15, 3, 2)
FULL = (300, 20, 5)
WARMUP_FRACTION = 0.2  # of the schedule, before fds and RSS are sampled as the baseline
RSS_GROWTH_LIMIT_KB = 4096


def counts() -> Tuple[int, int, int]:
    spec = os.environ.get("CALFWD_SOAK", "ci").strip().lower()
    if spec in ("", "ci"):
        return CI
    if spec == "full":
        return FULL
    reloads, restarts, kills = (int(x) for x in spec.split(","))
    return reloads, restarts, kills


def schedule(reloads: int, restarts: int, kills: int) -> List[str]:
    """The disturbances spread evenly: restarts and kills interleaved among the reloads."""
    events = [(i / reloads, "reload") for i in range(reloads)]
    events += [((i + 0.5) / restarts, "restart") for i in range(restarts)]
    events += [((i + 0.75) / kills, "kill") for i in range(kills)]
    return [kind for _pos, kind in sorted(events)]




def resources(pid: int) -> Tuple[int, int]:
    """(open file descriptors, VmRSS in kB) of a process."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return fds, rss


def settle(calfwd: Calfwd, quiet: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until calfwd has logged nothing for `quiet` seconds (its reconciles are done)."""
    until_steady(calfwd.line_count, quiet, timeout, "calfwd going quiet (its reconciles done)")


def test_soak(lab):
    reloads, restarts, kills = counts()
    plan = schedule(reloads, restarts, kills)
    fw = lab.firewalld
    fw.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    settle(calfwd)
    baseline = footprint(lab)
    pid = calfwd.proc.pid
    warmup = max(1, int(len(plan) * WARMUP_FRACTION))
    samples: List[Tuple[int, int]] = []
    failures: List[str] = []

    for i, kind in enumerate(plan, 1):
        if kind == "reload":
            fw.reload()
        elif kind == "restart":
            fw.restart()
        else:
            fw.kill()
            fw.start()
        assert calfwd.running, f"calfwd died at disturbance {i} ({kind}):\n" + "\n".join(calfwd.lines()[-20:])
        if not lab.pod_reaches_proxy(within=1.0):
            failures.append(f"{i} {kind}: pod -> proxy")
        if kind != "reload" and not lab.peer_reaches_pod(within=1.0):
            failures.append(f"{i} {kind}: peer -> pod")
        if i == warmup or i == len(plan):
            settle(calfwd)
            samples.append(resources(pid))

    settle(calfwd)
    assert not failures, f"traffic not back within a second after {len(failures)} of {len(plan)}: {failures}"
    assert calfwd.running
    assert footprint(lab) == baseline, "something was duplicated or changed"
    assert calfwd.cli("status").returncode == 0
    text = "\n".join(calfwd.lines())
    assert "Traceback" not in text and "NOT verified" not in text
    assert not calfwd.events("reconcile-failed") or all(
        "firewalld" in line for line in calfwd.events("reconcile-failed")), calfwd.events("reconcile-failed")

    (fds_warm, rss_warm), (fds_end, rss_end) = samples[0], samples[-1]
    print(f"soak {reloads}/{restarts}/{kills}: fds {fds_warm} -> {fds_end}, "
          f"RSS {rss_warm} -> {rss_end} kB, {len(calfwd.events('reconciled'))} reconciles")
    assert fds_end == fds_warm, f"file descriptors grew from {fds_warm} to {fds_end}"
    assert rss_end - rss_warm < RSS_GROWTH_LIMIT_KB, f"RSS grew from {rss_warm} to {rss_end} kB"
