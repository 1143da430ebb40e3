"""calfwd/commands/cleanup.py with fake drivers: which way firewalld's objects are removed
(D-Bus, its files, or not at all) follows what the bus says, and whatever stays is reported.
The real tool and firewalld are in the lab (tests/integration/test_cleanup_offline.py)."""

from __future__ import annotations

from typing import List, Tuple

from calfwd import config as cfg
from calfwd.commands.cleanup import Cleanup
from calfwd.desired import CALFWD_DESCRIPTION
from calfwd.drivers import NOT_ANSWERING, RUNNING, STOPPED
from calfwd.plan.firewalld.model import RemovePolicy, RemoveZone
from calfwd.plan.firewalld.offline import DiskObject, OnDisk

from fakes.firewalld import FakeFirewalld, converge, want
from fakes.nft import FakeNft

CONFIG = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16"]\n', "/etc/calfwd/calfwd.toml")
RUNTIME = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16"]\n[firewalld]\nmode = "runtime"\n',
                    "/etc/calfwd/calfwd.toml")


class Bus:
    """firewalld as its bus name shows it: a list of answers, one per reachability() call."""

    def __init__(self, *answers: Tuple[str, str]) -> None:
        self.answers = list(answers)

    def reachability(self) -> Tuple[str, str]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class FakeOffline:
    directory = "/etc/firewalld"

    def __init__(self, fail: str = "") -> None:
        self.zones = [DiskObject("calfwd", CALFWD_DESCRIPTION, interfaces=("cali+",))]
        self.policies = [DiskObject("calfwd-forward", CALFWD_DESCRIPTION, zones=("ANY", "calfwd"))]
        self.ran: List[str] = []
        self.fail = fail

    def read(self) -> OnDisk:
        return OnDisk(self.directory, tuple(self.zones), tuple(self.policies))

    def run(self, op) -> None:
        if self.fail:
            raise RuntimeError(self.fail)
        self.ran.append(op.description)
        if isinstance(op, RemovePolicy):
            self.policies = [p for p in self.policies if p.name != op.name]
        if isinstance(op, RemoveZone):
            self.zones = [z for z in self.zones if z.name != op.name]


def test_stopped_firewalld_loses_calfwds_objects_from_its_files():
    offline = FakeOffline()
    result = Cleanup(FakeNft(), Bus((STOPPED, "")), offline).run(CONFIG)
    assert offline.ran == ["delete policy 'calfwd-forward' (permanent)", "delete zone 'calfwd' (permanent)"]
    assert result.clean and result.removed == tuple(
        f"{d} in /etc/firewalld, with firewall-offline-cmd" for d in offline.ran)


def test_a_hung_firewalld_has_its_files_left_as_they_are_and_each_object_is_reported():
    offline = FakeOffline()
    result = Cleanup(FakeNft(), Bus((NOT_ANSWERING, "firewalld is on the bus but does not answer")),
                     offline).run(CONFIG)
    assert offline.ran == [] and not result.clean
    assert [line.split(": ")[1] for line in result.remains] == [
        "policy 'calfwd-forward' (permanent) not removed", "zone 'calfwd' (permanent) not removed"]
    assert all("does not answer" in line for line in result.remains)


def test_no_bus_reports_what_is_on_disk_and_nothing_when_nothing_is():
    offline = FakeOffline()
    result = Cleanup(FakeNft(), None, offline, bus_error="no system bus").run(CONFIG)
    assert offline.ran == [] and len(result.remains) == 2
    offline.zones, offline.policies = [], []
    assert Cleanup(FakeNft(), None, offline, bus_error="no system bus").run(CONFIG).clean, \
        "a host without firewalld or a bus: nothing of calfwd's can be there in permanent mode"
    [line] = Cleanup(FakeNft(), None, offline, bus_error="no system bus").run(RUNTIME).remains
    assert "runtime" in line and "no system bus" in line


def test_a_failing_tool_and_a_firewalld_starting_meanwhile_are_reported():
    result = Cleanup(FakeNft(), Bus((STOPPED, "")), FakeOffline(fail="exited 112: INVALID_ZONE")).run(CONFIG)
    assert len(result.remains) == 2 and all("INVALID_ZONE" in line for line in result.remains)
    offline = FakeOffline()
    result = Cleanup(FakeNft(), Bus((STOPPED, ""), (STOPPED, ""), (RUNNING, "")), offline).run(CONFIG)
    assert offline.ran == ["delete policy 'calfwd-forward' (permanent)"]
    [line] = result.remains
    assert line.startswith("firewalld: zone 'calfwd' (permanent) not removed: firewalld started during cleanup")


def test_running_firewalld_after_a_switch_to_runtime_mode_loses_the_permanent_objects_too():
    fw = FakeFirewalld()
    converge(fw, want())
    offline = FakeOffline()
    result = Cleanup(FakeNft(), fw, offline).run(RUNTIME)
    assert result.clean and offline.ran == [], "a running firewalld is changed over D-Bus only"
    assert "calfwd" not in fw.perm_zones and "calfwd" not in fw.rt_zones and not fw.perm_policies
    assert result.removed[-1].startswith("reload firewalld once")


def test_a_failed_removal_is_reported_with_everything_still_there():
    fw = FakeFirewalld()
    converge(fw, want())
    fw.fail, fw.fail_on = "ACCESS_DENIED", (RemoveZone,)
    result = Cleanup(FakeNft(), fw, None).run(CONFIG)
    assert result.removed == ("delete policy 'calfwd-forward' (permanent)", "delete policy 'calfwd-host' (permanent)")
    assert result.remains == ("firewalld: zone 'calfwd' (permanent) not removed: ACCESS_DENIED",
                              "firewalld: runtime state (unload policy 'calfwd-forward'; unload policy "
                              "'calfwd-host'; unload zone 'calfwd') still there after cleanup")


DISABLED = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16"]\n[firewalld]\nenabled = false\n',
                     "/etc/calfwd/calfwd.toml")


def test_objects_made_before_firewalld_was_disabled_in_the_config_still_go(tmp_path):
    """Review: with [firewalld] enabled = false cleanup skipped firewalld entirely and left the
    zone and policies an earlier run made."""
    offline = FakeOffline()
    offline.directory = str(tmp_path)  # it exists
    result = Cleanup(FakeNft(), Bus((STOPPED, "")), offline).run(DISABLED)
    assert offline.ran == ["delete policy 'calfwd-forward' (permanent)", "delete zone 'calfwd' (permanent)"]
    assert result.clean


def test_disabled_and_no_bus_is_not_an_error():
    result = Cleanup(FakeNft(), None, FakeOffline(), "no system bus").run(DISABLED)
    assert result.clean and result.removed == ()


def test_each_removal_is_said_as_it_is_done_not_at_the_end():
    """Package removal may be killed halfway: what was already removed must be on record."""
    log: List[str] = []

    class Logged(FakeOffline):
        def run(self, op) -> None:
            log.append(f"run: {op.description}")
            super().run(op)

    fw = FakeFirewalld()
    converge(fw, want())
    fw.fail, fw.fail_on = "ACCESS_DENIED", (RemoveZone,)
    online = Cleanup(FakeNft(), fw, None, progress=lambda line: log.append(f"said: {line}")).run(CONFIG)
    assert [line[len("said: "):] for line in log] == list(online.removed)
    log.clear()
    result = Cleanup(FakeNft(), Bus((STOPPED, "")), Logged(), progress=lambda line: log.append(f"said: {line}")).run(CONFIG)
    where = "in /etc/firewalld, with firewall-offline-cmd"
    assert log == ["run: delete policy 'calfwd-forward' (permanent)",
                   f"said: delete policy 'calfwd-forward' (permanent) {where}",
                   "run: delete zone 'calfwd' (permanent)",
                   f"said: delete zone 'calfwd' (permanent) {where}"]
    assert result.removed == tuple(line[len("said: "):] for line in log if line.startswith("said: "))
