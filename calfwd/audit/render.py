"""The audit (audit/build.py) as a page a reviewer can file, and as JSON for tools.

Plain words first: the page explains firewalld's terms once, at the top, so that someone
applying the STIG who does not run Calico can read every line below it.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict
from typing import Any, Dict, List

from calfwd.audit.build import Audit

SCHEMA = 1
WIDTH = 100
TERMS = (
    "zone: a set of interfaces (or source addresses) that firewalld treats alike; its target is "
    "what happens to traffic no rule in it accepts (DROP: discarded silently).",
    "policy: rules for traffic between zones; HOST is this host itself, ANY is every zone. Target "
    "CONTINUE: what the policy does not accept goes on to the zone's own rules.",
    "port 179/tcp: a TCP or UDP port accepted; protocol 4: an IP protocol accepted by number.",
    "natOutgoing (masquerade): outgoing pod traffic gets this host's address as its source.",
)


def _wrap(text: str, indent: str = "", first: str = "") -> List[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=first or indent, subsequent_indent=indent,
                         break_on_hyphens=False, break_long_words=False) or [first or indent]


def text(audit: Audit) -> str:
    out = ["calfwd audit: what calfwd makes this host accept, forward and masquerade, and why", ""]
    out += [f"Host:      {audit.host}", f"Date:      {audit.date}", f"calfwd:    {audit.version}",
            f"Config:    {audit.config_path}",
            f"CNI:       {audit.cni[0]} ({audit.cni[1]})",
            "Verdict:   " + ("in effect exactly as configured" if audit.ok
                             else "NOT as configured or not fully read: see Differences")]
    out += ["", "Terms"]
    for term in TERMS:
        out += _wrap(term, "    ", "  - ")
    out += ["", "firewalld"]
    out += [f"  {fact.replace('_', ' ') + ':':<21}{value}" for fact, value in audit.firewalld]
    if audit.firewalld_note:
        out += _wrap(audit.firewalld_note, "    ", "  ")
    out += ["", "What calfwd makes this host accept and forward"]
    if not audit.entries:
        out.append("  nothing (see above)")
    for entry in audit.entries:
        out.append(f"  {entry.kind} {entry.name}")
        out += _wrap(entry.summary, "      ", "    ")
        out += _wrap("why: " + entry.why, "      ", "    ")
        for item in entry.items:
            key = f" [config: {item.key}]" if item.key else ""
            out += _wrap(f"{item.kind} {item.value}: {item.why}{key}", " " * 8, "    - ")
    out += ["", "nftables rules, as `nft list table` prints them"]
    out += [f"  {line}" for line in audit.nft_rules] or ["  (none)"]
    out += ["", "What calfwd leaves untouched"]
    for line in audit.untouched:
        out += _wrap(line, "    ", "  - ")
    out += ["", "firewalld's check of its permanent configuration (firewall-cmd --check-config)",
            f"  {audit.check}"]
    out += [f"    {line}" for line in audit.check_output.splitlines()]
    out += ["", "Differences from the configuration (what `calfwd apply` would change to restore it)"]
    problems = list(audit.differences) + [f"could not read: {line}" for line in audit.unreadable]
    if audit.check == "failed":
        problems.append("firewalld's check of its permanent configuration failed (above)")
    for line in problems or ["none"]:
        out += _wrap(line, "    ", "  - ")
    return "\n".join(out) + "\n"


def as_dict(audit: Audit) -> Dict[str, Any]:
    data = asdict(audit)
    data["firewalld"] = dict(audit.firewalld)
    data["cni"] = {"kind": audit.cni[0], "why": audit.cni[1]}
    return dict({"schema": SCHEMA, "ok": audit.ok}, **data)
