"""What `calfwd apply --offline` runs against firewalld's files: the pure plan (the online
planner's permanent operations as firewall-offline-cmd options) and how the driver reads the
files into settings. The tool itself runs in the lab (tests/integration/test_apply_offline.py)."""

from __future__ import annotations

import os
from typing import Any, Dict

import pytest

from calfwd.commands.apply_offline import apply_offline, offline_facts
from calfwd.config import parse
from calfwd.desired import CALFWD_DESCRIPTION, desired
from calfwd.drivers.firewalld_offline import OfflineFirewalld
from calfwd.plan.firewalld.model import UpdatePolicy, freeze
from calfwd.plan.firewalld.offline_apply import DiskConfig, offline_apply_plan, offline_runs

BASE = '[calico]\nip_pools = ["198.18.64.0/20"]\n'
MARK = CALFWD_DESCRIPTION
PUBLIC = {"target": "default", "description": "For use in public areas.", "services": ("ssh",)}


def want(version: str = "1.3.3", extra: str = "", conf: Dict[str, str] = None):
    return desired(parse(BASE + extra, "calfwd.toml"), offline_facts(version, conf or {})).firewalld


def stock(**zones: Dict[str, Any]) -> DiskConfig:
    return DiskConfig("/etc/firewalld", zones={"public": PUBLIC, "trusted": {"target": "ACCEPT"}, **zones})


def runs(plan):
    return [run for step in plan.steps for run in step.runs]


def ours(disk: DiskConfig, version: str = "2.3.1") -> DiskConfig:
    """The files after a first offline apply, as firewalld would hold them."""
    zones, policies, services = dict(disk.zones), dict(disk.policies), dict(disk.services)
    w = want(version)
    zones[w.zone.name] = {"target": "ACCEPT", "description": MARK, "interfaces": w.zone.interfaces}
    for p in w.policies:
        policies[p.name] = {"target": p.target, "priority": -1, "description": MARK, "ingress_zones": p.ingress_zones,
                            "egress_zones": p.egress_zones, "ports": p.ports, "protocols": p.protocols}
    if w.catch_all_zone:
        services[w.host_service.name] = {"short": w.host_service.name, "description": MARK,
                                         "ports": w.host_service.ports, "protocols": w.host_service.protocols}
        zones["public"] = dict(PUBLIC, services=("ssh", w.host_service.name))
    return DiskConfig(disk.directory, zones, policies, services)


def test_a_fresh_directory_gets_the_zone_and_both_policies_one_option_kind_per_run():
    plan = offline_apply_plan(want("2.3.1"), stock())
    assert [s.description.split(":")[0] for s in plan.steps] == [
        "create zone 'calfwd' (permanent)", "create policy 'calfwd-forward' (permanent)",
        "create policy 'calfwd-host' (permanent)"]
    assert plan.steps[0].runs[:3] == (("--new-zone=calfwd",), ("--zone=calfwd", "--set-target=ACCEPT"),
                                      ("--zone=calfwd", f"--set-description={MARK}"))
    # firewall-offline-cmd silently keeps only one of --set-target and --set-description given together.
    for run in runs(plan):
        assert len({arg.split("=")[0] for arg in run[1:]}) <= 1, run
    assert ("--policy=calfwd-host", "--add-port=179/tcp", "--add-port=5473/tcp", "--add-port=4789/udp") in runs(plan)
    assert ("--policy=calfwd-forward", "--add-ingress-zone=ANY") in runs(plan)
    assert plan.conflicts == ()


def test_firewalld_before_2_0_with_nothing_bound_in_the_default_zone_gets_calfwds_service_there():
    plan = offline_apply_plan(want("1.3.3"), stock())
    assert ("--new-service=calfwd-host",) in runs(plan)
    assert ("--zone=public", "--add-service=calfwd-host") in runs(plan)


def test_the_default_zone_comes_from_firewalld_conf_and_a_bound_one_needs_no_service():
    w = want("1.3.3", conf={"DefaultZone": "internal"})
    assert w.policies[1].ingress_zones == ("internal",) and w.catch_all_zone == "internal"
    bound = stock(public=dict(PUBLIC, interfaces=("eth0",)))
    assert not any("service" in s.description for s in offline_apply_plan(want("1.3.3"), bound).steps)


def test_a_second_run_changes_nothing():
    for version in ("1.3.3", "2.3.1"):
        assert offline_apply_plan(want(version), ours(stock(), version)).empty, version


def test_policies_with_no_bound_zone_are_not_reported_offline():
    """NetworkManager binds the uplink at runtime: the files cannot tell."""
    assert offline_apply_plan(want("2.3.1"), ours(stock())).conflicts == ()


def test_someone_elses_zone_of_calfwds_name_stays_and_is_reported():
    disk = stock(calfwd={"target": "DROP", "description": "mine", "interfaces": ("eth7",)})
    plan = offline_apply_plan(want("2.3.1"), disk)
    assert not any("zone 'calfwd'" in s.description for s in plan.steps)
    assert any("was not created by calfwd" in c for c in plan.conflicts)


def test_a_renamed_zone_of_calfwds_goes_once_the_configured_one_exists():
    old = ours(stock())
    zones = dict(old.zones)
    zones["pods-old"] = zones.pop("calfwd")
    plan = offline_apply_plan(want("2.3.1"), DiskConfig(old.directory, zones, old.policies, old.services))
    order = [s.description.split(":")[0] for s in plan.steps]
    assert order[0] == "create zone 'calfwd' (permanent)"
    assert order.index("remove interface cali+ from zone 'pods-old' (permanent)") < \
        order.index("add interface cali+ to zone 'calfwd' (permanent)") < order.index("delete zone 'pods-old' (permanent)")


def test_an_update_removes_what_the_file_has_and_calfwd_does_not_want():
    have = {"ports": (("179", "tcp"), ("9999", "tcp")), "masquerade": True, "services": ("ssh",)}
    op = UpdatePolicy("calfwd-host", freeze({"ports": (("179", "tcp"), ("4789", "udp")), "masquerade": False,
                                             "services": ()}))
    assert offline_runs(op, have) == [
        ("--policy=calfwd-host", "--remove-service-from-policy=ssh"),
        ("--policy=calfwd-host", "--remove-port=9999/tcp"),
        ("--policy=calfwd-host", "--add-port=4789/udp"),
        ("--policy=calfwd-host", "--remove-masquerade"),
    ]


def test_the_driver_reads_the_files_over_the_shipped_ones(tmp_path):
    shipped, own = tmp_path / "usr", tmp_path / "etc"
    (shipped / "zones").mkdir(parents=True)
    (own / "zones").mkdir(parents=True)
    (own / "policies").mkdir()
    (shipped / "zones" / "public.xml").write_text('<zone><description>stock</description></zone>')
    (own / "zones" / "public.xml").write_text(
        '<zone><description>edited</description><interface name="eth0"/><service name="ssh"/></zone>')
    (own / "policies" / "calfwd-host.xml").write_text(
        f'<policy target="CONTINUE"><description>{MARK}</description><port port="179" protocol="tcp"/>'
        '<protocol value="4"/><ingress-zone name="public"/><egress-zone name="HOST"/></policy>')
    disk = OfflineFirewalld(str(own), shipped=str(shipped)).read_config()
    assert disk.zones["public"]["description"] == "edited"
    assert disk.zones["public"]["interfaces"] == ("eth0",) and disk.zones["public"]["target"] == "default"
    policy = disk.policies["calfwd-host"]
    assert policy["priority"] == -1 and policy["ports"] == (("179", "tcp"),) and policy["protocols"] == ("4",)
    assert policy["ingress_zones"] == ("public",) and policy["egress_zones"] == ("HOST",)


class FakeTool:
    """firewalld's files as a dict, changed by the runs it is given; fails on `fail_on`."""

    def __init__(self, fail_on: str = "", version: str = "2.3.1") -> None:
        self.directory = "/img/etc/firewalld"
        self.disk = stock()
        self.fail_on = fail_on
        self._version = version
        self.ran = []

    def version(self) -> str:
        if not self._version:
            raise OSError("firewall-offline-cmd is not installed (it comes with firewalld)")
        return self._version

    def read_config(self) -> DiskConfig:
        return self.disk

    def run_args(self, args) -> None:
        if self.fail_on and any(a.startswith(self.fail_on) for a in args):
            raise RuntimeError("firewall-offline-cmd exited 112: INVALID_ZONE")
        self.ran.append(args)
        if args[0] == "--zone=calfwd" and args[1].startswith("--add-interface="):  # the zone's last run
            self.disk = DiskConfig(self.disk.directory, ours(stock()).zones, self.disk.policies, self.disk.services)


def test_a_failing_run_stops_the_rest_and_every_missing_object_is_named():
    tool = FakeTool(fail_on="--new-policy=calfwd-forward")
    result = apply_offline(parse(BASE, "calfwd.toml"), tool, {})
    assert result.changed == ("create zone 'calfwd' (permanent): target ACCEPT, interfaces cali+, tunl0, "
                              "vxlan.calico, vxlan-v6.calico, wireguard.cali, wg-v6.cali",)
    assert result.remains[0].startswith("firewalld: create policy 'calfwd-forward' (permanent)")
    assert result.remains[0].endswith(f"not done in {tool.directory}: firewall-offline-cmd exited 112: INVALID_ZONE")
    assert len(result.remains) == 2, result.remains  # the failed one is named once
    assert result.remains[1].startswith("firewalld: still to do in /img/etc/firewalld: create policy 'calfwd-host'")
    assert not any(a[0].startswith("--new-policy=calfwd-host") for a in tool.ran), "ran on after a failure"


def test_without_the_tool_nothing_is_written_and_that_is_said():
    tool = FakeTool(version="")
    result = apply_offline(parse(BASE, "calfwd.toml"), tool, {})
    assert result.remains == ("firewalld: nothing written to /img/etc/firewalld: firewall-offline-cmd is not "
                              "installed (it comes with firewalld)",) and tool.ran == []


# -- what calfwd would open, or let firewall-offline-cmd open, must be a regular file -------------

@pytest.mark.parametrize("where", ["firewalld.conf", "zones/planted.xml", "policies/planted.xml",
                                   "services/planted.xml", "ipsets/planted.xml", "direct.xml"])
def test_a_fifo_where_firewalld_keeps_a_file_is_refused_at_once(tmp_path, no_hang, where):
    from calfwd.doctor.reads import read_firewalld_conf
    from calfwd.drivers.firewalld_offline import nonregular_files

    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "public.xml").write_text('<?xml version="1.0"?><zone><short>Public</short></zone>')
    (tmp_path / "firewalld.conf").write_text("DefaultZone=public\n")
    assert nonregular_files(str(tmp_path)) == []
    path = tmp_path / where
    path.parent.mkdir(exist_ok=True)
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    [line] = nonregular_files(str(tmp_path))
    assert line == f"{path} is a FIFO, not a regular file (calfwd and firewall-offline-cmd would wait on it)"
    if where == "firewalld.conf":
        with pytest.raises(OSError, match="a FIFO, not a regular file"):
            read_firewalld_conf(str(tmp_path))
    if where.startswith(("zones/", "policies/", "services/")):
        with pytest.raises(OSError, match="a FIFO, not a regular file"):
            OfflineFirewalld(str(tmp_path), shipped=str(tmp_path / "none")).read_config()
        kind = where.split("/")[0]
        [obj] = [o for o in getattr(OfflineFirewalld(str(tmp_path)).read(), kind) if o.name == "planted"]
        assert "not a regular file" in obj.unreadable


def test_a_link_to_a_fifo_is_refused_and_a_link_to_a_file_is_read(tmp_path, no_hang):
    from calfwd.doctor.reads import read_firewalld_conf
    from calfwd.drivers.firewalld_offline import nonregular_files

    real = tmp_path / "real.conf"
    real.write_text("DefaultZone=internal\n")
    (tmp_path / "firewalld.conf").symlink_to(real)
    assert nonregular_files(str(tmp_path)) == [] and read_firewalld_conf(str(tmp_path)) == {"DefaultZone": "internal"}
    real.unlink()
    os.mkfifo(real)
    assert nonregular_files(str(tmp_path)) == [
        f"{tmp_path / 'firewalld.conf'} is a FIFO, not a regular file (calfwd and firewall-offline-cmd would wait on it)"]


def test_a_directory_sharing_the_running_firewalld_s_files_is_found_by_identity_not_by_name(tmp_path):
    from calfwd.commands.apply_offline import shared_with

    live = tmp_path / "etc-firewalld"
    for sub in ("zones", "policies", "services"):
        (live / sub).mkdir(parents=True)
    image = tmp_path / "image"
    image.mkdir()
    assert shared_with(str(image), str(live)) == ""
    assert shared_with(str(live), str(live)) == f"{live} is {live}"
    (tmp_path / "link").symlink_to(live)
    assert shared_with(str(tmp_path / "link"), str(live)) == f"{tmp_path / 'link'} is {live}"
    for sub, into in (("zones", "zones"), ("policies", "zones"), ("services", ".")):
        (image / sub).symlink_to(live / into)
        assert shared_with(str(image), str(live)) == f"{image / sub} is {os.path.normpath(live / into)}", sub
        (image / sub).unlink()
    (image / "zones").mkdir()
    assert shared_with(str(image), str(live)) == "", "a directory of its own"
    assert shared_with(str(image), str(tmp_path / "missing")) == ""


def test_offline_serves_the_configured_cni_and_reads_nothing_of_the_host():
    """The directory may be an image's: "auto" serves Calico as before, a named kind is served."""
    assert offline_facts("2.3.1", {}).cni.kind == "calico"
    canal = desired(parse(BASE + '[cni]\nkind = "canal"\n', "calfwd.toml"), offline_facts("2.3.1", {}, "canal"))
    assert "flannel.1" in canal.firewalld.zone.interfaces
    assert ("8472", "udp") in canal.firewalld.policies[1].ports
