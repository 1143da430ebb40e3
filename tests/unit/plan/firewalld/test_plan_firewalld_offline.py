"""What `calfwd cleanup` removes from firewalld's files when firewalld is stopped: the pure plan,
and how the driver reads the files and spells the tool's options. The tool itself runs in the
lab (tests/integration/test_cleanup_offline.py)."""

from __future__ import annotations

from typing import Any

from calfwd.config import parse
from calfwd.desired import CALFWD_DESCRIPTION, HostFacts, desired
from calfwd.drivers.firewalld_offline import offline_args, read_disk
from calfwd.plan.firewalld.model import RemoveFromZone, RemovePolicy, RemoveZone
from calfwd.plan.firewalld.offline import DiskObject, OnDisk, offline_cleanup_plan

BASE = '[calico]\nip_pools = ["198.18.64.0/20"]\n'
MARK = CALFWD_DESCRIPTION


def want(**firewalld: Any):
    text = BASE + ("[firewalld]\n" + "".join(f'{k} = "{v}"\n' for k, v in firewalld.items()) if firewalld else "")
    return desired(parse(text, "calfwd.toml"), HostFacts()).firewalld


def disk(zones=(), policies=()) -> OnDisk:
    return OnDisk("/etc/firewalld", tuple(zones), tuple(policies))


OURS = disk(
    zones=[DiskObject("calfwd", MARK, interfaces=("cali+", "tunl0")), DiskObject("public", "For use in public areas.")],
    policies=[DiskObject("calfwd-forward", MARK, zones=("ANY", "calfwd")),
              DiskObject("calfwd-host", MARK, zones=("public", "HOST"))],
)


def test_policies_go_before_the_zone_they_name():
    p = offline_cleanup_plan(want(), OURS)
    assert p.ops == (RemovePolicy("calfwd-forward"), RemovePolicy("calfwd-host"), RemoveZone("calfwd"))
    assert p.remains == () and p.left_alone == ()


def test_nothing_there_is_an_empty_plan():
    assert offline_cleanup_plan(want(), disk()).empty
    assert offline_cleanup_plan(want(), disk(zones=[DiskObject("public", "x", interfaces=("eth0",))])).empty


def test_objects_an_older_config_named_differently_are_found_by_their_mark():
    d = want(zone="pods", forward_policy="pods-fwd", host_policy="pods-host")
    p = offline_cleanup_plan(d, OURS)
    assert p.ops == (RemovePolicy("calfwd-forward"), RemovePolicy("calfwd-host"), RemoveZone("calfwd"))


def test_a_zone_and_a_policy_with_calfwds_names_but_not_its_mark_are_left_alone():
    theirs = disk(zones=[DiskObject("calfwd", "the admin's own", interfaces=("cali+",))],
                  policies=[DiskObject("calfwd-forward", "", zones=("ANY", "calfwd"))])
    p = offline_cleanup_plan(want(), theirs)
    assert p.ops == () and p.remains == ()
    assert p.left_alone == ("policy 'calfwd-forward' left alone: it was not created by calfwd",
                            "zone 'calfwd' left alone: it was not created by calfwd")


def test_a_stock_zone_loses_only_calfwds_interfaces_and_sources():
    d = want(zone="trusted")
    trusted = DiskObject("trusted", "stock", interfaces=("eth1", "cali+", "tunl0"), sources=("10.9.0.0/16",))
    p = offline_cleanup_plan(d, disk(zones=[trusted], policies=OURS.policies))
    assert p.ops[:2] == (RemoveFromZone("trusted", "interface", "cali+", True),
                         RemoveFromZone("trusted", "interface", "tunl0", True))
    assert p.ops[2:] == (RemovePolicy("calfwd-forward"), RemovePolicy("calfwd-host"))
    assert not any(getattr(op, "name", "") == "trusted" for op in p.ops), "a stock zone is never deleted"


def test_a_zone_a_foreign_policy_still_names_stays_and_is_reported():
    foreign = DiskObject("admin-to-pods", "mine", zones=("public", "calfwd"))
    p = offline_cleanup_plan(want(), disk(OURS.zones, OURS.policies + (foreign,)))
    assert RemoveZone("calfwd") not in p.ops
    assert p.ops == (RemovePolicy("calfwd-forward"), RemovePolicy("calfwd-host"))
    [line] = p.remains
    assert line.startswith("zone 'calfwd' not removed: policy 'admin-to-pods'") and "fails to load" in line


def test_an_unreadable_file_of_calfwds_is_reported_and_anyone_elses_ignored():
    broken = [DiskObject("calfwd", unreadable="zones/calfwd.xml is not valid XML (x)", marked=True),
              DiskObject("other", unreadable="zones/other.xml is not valid XML (y)")]
    p = offline_cleanup_plan(want(), disk(zones=broken))
    assert p.ops == () and p.remains == ("zone 'calfwd' not removed: zones/calfwd.xml is not valid XML (x)",)


def test_the_driver_reads_firewalld_files_and_spells_options_safely(tmp_path):
    (tmp_path / "zones").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "zones" / "calfwd.xml").write_text(
        f'<?xml version="1.0" encoding="utf-8"?>\n<zone target="ACCEPT">\n  <description>{MARK}</description>\n'
        '  <interface name="cali+"/>\n  <source address="10.244.0.0/16"/>\n  <source ipset="pods"/>\n</zone>\n')
    (tmp_path / "zones" / "calfwd.xml.old").write_text("<zone/>")
    (tmp_path / "zones" / "broken.xml").write_text("<zone><description>Managed by calfwd")
    (tmp_path / "policies" / "calfwd-forward.xml").write_text(
        f'<policy target="ACCEPT" priority="-1"><description>{MARK}</description>'
        '<ingress-zone name="ANY"/><egress-zone name="calfwd"/></policy>')
    read = read_disk(str(tmp_path))
    assert [z.name for z in read.zones] == ["broken", "calfwd"]
    broken, calfwd = read.zones
    assert broken.unreadable.startswith(f"{tmp_path}/zones/broken.xml is not valid XML") and broken.marked
    assert calfwd.ours and calfwd.interfaces == ("cali+",) and calfwd.sources == ("10.244.0.0/16", "ipset:pods")
    assert read.policies[0].ours and read.policies[0].zones == ("ANY", "calfwd")
    assert read_disk(str(tmp_path / "nosuch")) == OnDisk(str(tmp_path / "nosuch"))
    assert offline_args(RemoveZone("calfwd")) == ["--delete-zone=calfwd"]
    assert offline_args(RemovePolicy("-x")) == ["--delete-policy=-x"]
    assert offline_args(RemoveFromZone("trusted", "source", "10.0.0.0/8", True)) == \
        ["--zone=trusted", "--remove-source=10.0.0.0/8"]


def test_calfwds_service_leaves_every_zone_then_goes_and_anyone_elses_stays():
    """Issue 12 item 2: calfwd's host service in the default zone (its catch-all)."""
    from calfwd.plan.firewalld.model import RemoveService
    on_disk = OnDisk("/etc/firewalld",
                     (DiskObject("public", "For use in public areas.", services=("ssh", "calfwd-host", "web")),),
                     (), (DiskObject("calfwd-host", MARK), DiskObject("web", "the admin's")))
    p = offline_cleanup_plan(want(), on_disk)
    assert p.ops == (RemoveFromZone("public", "service", "calfwd-host", True), RemoveService("calfwd-host"))
    assert offline_args(p.ops[0]) == ["--zone=public", "--remove-service-from-zone=calfwd-host"]
    assert offline_args(p.ops[1]) == ["--delete-service=calfwd-host"]
