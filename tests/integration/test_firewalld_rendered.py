"""Issue 12 item 4 on the rulesets firewalld 1.2.0 and 1.3.3 really rendered with calfwd's objects
(../shared/fixtures/firewalld, recorded in the lab: no registry serves 1.0.0-1.2.0 any more),
loaded into a real kernel in a namespace and read back by calfwd's own nftables driver."""

from __future__ import annotations

import json
import os

import pytest

from lab.netns import Netns, PREFIX, unique_id
from lab.calfwd import PYTHON, REPO

FIXTURES = REPO.parent / "shared" / "fixtures" / "firewalld"
READ_BACK = r"""
import json, sys
from calfwd.drivers.nftables import Nftables
from calfwd.judge import rendered as r
chains = Nftables().read_chains(r.DISPATCH_CHAINS)
print(json.dumps(r.rendering_problems(chains, sys.argv[1], "calfwd-forward")))
"""


@pytest.mark.parametrize("version, broken", [("1.2.0", True), ("1.3.3", False)])
def test_the_literal_wildcard_is_read_back_from_what_firewalld_rendered(version, broken):
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    ruleset = (FIXTURES / f"ruleset-{version}-with-calfwd.nft").read_text()
    with Netns(f"{PREFIX}r{unique_id()}") as ns:
        ns.run("nft", "-f", "-", input=ruleset)
        out = ns.run(PYTHON, "-c", READ_BACK, version, env={"PYTHONPATH": str(REPO)}).stdout
    problems = json.loads(out)
    assert bool(problems) == broken, problems
    if broken:
        assert "cali+ literally" in problems[0] and "never applies" in problems[0]
