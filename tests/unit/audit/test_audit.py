"""`calfwd audit`: the page built from what was read, exactly; its JSON; its verdict."""

from __future__ import annotations

import json
from dataclasses import replace

from calfwd.audit import render as audit_render
from calfwd import config as cfg
from calfwd.audit.build import NOT_CALFWDS, Observed, build
from calfwd.desired import HostFacts, desired
from calfwd.plan import nftables as nft_plan
from calfwd.plan.firewalld.model import FirewalldActual, ObjectState
from calfwd.reconcile import LayerPlan

CONFIG = ('[calico]\nip_pools = ["10.244.0.0/16", "fd00:10::/64"]\nnat_outgoing = ["10.244.0.0/16"]\n'
          'interfaces = ["cali+", "tunl0"]\nhost_ports = ["bgp", "ipip"]\n')
FACTS = HostFacts(True, "2.3.1", "drop", "RUNNING")
SEEN = Observed(hostname="node1", date="2026-11-30T23:00:00Z", version="0.1.0", backend="nftables",
                default_zone_target="DROP", check="ok",
                nft_text="table inet calfwd {\n\tchain postrouting {\n\t}\n}\n")


def actual(host_ports=(("179", "tcp"),), interfaces=("cali+", "tunl0")) -> FirewalldActual:
    """firewalld's runtime as it is after `calfwd apply` (what the driver reads)."""
    return FirewalldActual(
        zone=ObjectState("calfwd", runtime={"target": "ACCEPT", "interfaces": interfaces}),
        policies=(ObjectState("calfwd-forward", runtime={"ingress_zones": ("ANY",), "egress_zones": ("calfwd",),
                                                         "target": "ACCEPT"}),
                  ObjectState("calfwd-host", runtime={"ingress_zones": ("drop",), "egress_zones": ("HOST",),
                                                      "target": "CONTINUE", "ports": host_ports,
                                                      "protocols": ("4",)})),
        zones_runtime=frozenset({"block", "calfwd", "drop", "public", "trusted"}))


def report(fw=None, nft_actions=(), seen=SEEN, facts=FACTS, text=CONFIG):
    config = cfg.parse(text, "/etc/calfwd/calfwd.toml")
    want = desired(config, facts)
    layers = (LayerPlan("nftables", tuple(nft_actions), read=nft_plan.render(want.nft)),
              fw or LayerPlan("firewalld", (), read=actual()))
    return build(config, want, facts, layers, seen)


PAGE = """\
calfwd audit: what calfwd makes this host accept, forward and masquerade, and why

Host:      node1
Date:      2026-11-30T23:00:00Z
calfwd:    0.1.0
Config:    /etc/calfwd/calfwd.toml
CNI:       calico (not judged)
Verdict:   in effect exactly as configured

Terms
  - zone: a set of interfaces (or source addresses) that firewalld treats alike; its target is what
    happens to traffic no rule in it accepts (DROP: discarded silently).
  - policy: rules for traffic between zones; HOST is this host itself, ANY is every zone. Target
    CONTINUE: what the policy does not accept goes on to the zone's own rules.
  - port 179/tcp: a TCP or UDP port accepted; protocol 4: an IP protocol accepted by number.
  - natOutgoing (masquerade): outgoing pod traffic gets this host's address as its source.

firewalld
  state:               running
  version:             2.3.1
  backend:             nftables
  default zone:        drop
  default zone target: DROP

What calfwd makes this host accept and forward
  zone calfwd
    made by calfwd; target ACCEPT: everything arriving on these interfaces (or from these sources)
      is accepted, to this host and forwarded
    why: traffic from pods on this node and from other nodes' pods through Calico's tunnels arrives
      on these interfaces; Calico's own policy (Felix) judges it, not firewalld
    - interface cali+: Calico's pod interfaces (one veth per pod on this node) [config: interfaces]
    - interface tunl0: Calico's IP-in-IP tunnel (pod traffic from other nodes) [config: interfaces]
    - target ACCEPT: what arrives on calfwd's interfaces and sources is accepted here and judged by
        Felix [config: zone]
  policy calfwd-forward
    forwarded traffic from any zone to zone calfwd; target ACCEPT (calfwd's zone holds only Calico's
      interfaces, so this is only traffic to pods)
    why: firewalld judges forwarded traffic by the zone it came in on (the uplink's zone), not by
      calfwd's zone: without this, traffic routed into pods from other nodes (pod-to-pod, NodePort
      and Service backends) is rejected (firewalld issue 527)
    - target ACCEPT: everything forwarded into calfwd's zone is accepted [config: zone]
  policy calfwd-host
    traffic from zone drop to this host (HOST); target CONTINUE (anything else goes on to the zone's
      own rules)
    why: Calico's traffic to this host from the other nodes, accepted from the zone the uplink is in
      whatever that zone's target is (a STIG host's default zone drop included)
    - port 179/tcp: BGP peering: Calico's BIRD on the other nodes exchanges pod routes with this one
        [config: host_ports: bgp]
    - protocol 4: IP-in-IP encapsulation (IP protocol 4): pod traffic between nodes in Calico's IPIP
        mode [config: host_ports: ipip]
    - target CONTINUE: accepts only the ports and protocols listed here; the rest goes on to the
        zone's own rules [config: host_ports]
  nftables table inet calfwd
    made by calfwd; masquerades pod traffic leaving the pools, nothing else (it accepts and drops
      nothing)
    why: natOutgoing: traffic from pods to addresses outside every pool leaves with this host's
      address. Felix has the same rule in iptables, but firewalld <= 1.x flushes it at every reload
      and restart; firewalld never touches this table
    - masquerade source 10.244.0.0/16: a Calico IP pool with natOutgoing [config: nat_outgoing]

nftables rules, as `nft list table` prints them
  table inet calfwd {
      chain postrouting {
      }
  }

What calfwd leaves untouched
  - the default zone drop and its target DROP: not changed
  - the other zones (block, public, trusted): not changed
  - every other firewalld policy and service: not changed
  - firewalld's own nftables table (inet firewalld): never written; calfwd talks to firewalld over
    D-Bus only, never through its direct interface or passthroughs
  - Felix's and kube-proxy's rules (iptables chains cali-*, KUBE-*; their nftables tables): never
    changed; calfwd only reads Felix's chains to notice when firewalld flushed them

firewalld's check of its permanent configuration (firewall-cmd --check-config)
  ok

Differences from the configuration (what `calfwd apply` would change to restore it)
  - none
"""


def test_the_page_for_a_known_host_is_exactly_this():
    assert audit_render.text(report()) == PAGE


def test_ports_nobody_asked_for_are_listed_as_not_calfwds_and_are_a_difference():
    fw = LayerPlan("firewalld", ("update policy 'calfwd-host' (runtime): ports +179/tcp -2222/tcp",),
                   read=actual(host_ports=(("2222", "tcp"),), interfaces=("cali+", "tunl0", "eth1")))
    page = report(fw=fw)
    host = next(e for e in page.entries if e.name == "calfwd-host")
    assert [(i.value, i.why, i.key) for i in host.items if i.kind == "port"] == [("2222/tcp", NOT_CALFWDS, "")]
    zone = next(e for e in page.entries if e.kind == "zone")
    assert [i.key for i in zone.items if i.value == "eth1"] == [""]
    assert not page.ok
    assert page.differences == ("firewalld: update policy 'calfwd-host' (runtime): ports +179/tcp -2222/tcp",)
    text = audit_render.text(page)
    assert "Verdict:   NOT as configured" in text and "- port 2222/tcp: NOT in calfwd's config" in text


def test_a_service_and_a_rich_rule_someone_added_to_the_host_policy_are_listed_as_not_calfwds():
    rule = 'rule family="ipv4" port port="22" protocol="tcp" accept'
    read = actual()
    host = replace(read.policies[1], runtime=dict(read.policies[1].runtime, services=("ssh",), rich_rules=(rule,)))
    fw = LayerPlan("firewalld", ("update policy 'calfwd-host' (runtime): services -ssh; rich_rules -" + rule,),
                   read=replace(read, policies=(read.policies[0], host)))
    text = audit_render.text(report(fw=fw))
    block = text.split("  policy calfwd-host\n")[1].split("  nftables table")[0]
    assert block.splitlines()[4:] == [
        "    - port 179/tcp: BGP peering: Calico's BIRD on the other nodes exchanges pod routes with this one",
        "        [config: host_ports: bgp]",
        "    - protocol 4: IP-in-IP encapsulation (IP protocol 4): pod traffic between nodes in Calico's IPIP",
        "        mode [config: host_ports: ipip]",
        '    - rich rule rule family="ipv4" port port="22" protocol="tcp" accept: NOT in calfwd\'s config:',
        "        someone else added it to calfwd's object",
        "    - service ssh: NOT in calfwd's config: someone else added it to calfwd's object",
        "    - target CONTINUE: accepts only the ports and protocols listed here; the rest goes on to the",
        "        zone's own rules [config: host_ports]",
    ]
    assert "Verdict:   NOT as configured" in text


def test_every_setting_that_lets_traffic_into_calfwds_zone_or_policies_is_listed():
    read = actual()
    zone = replace(read.zone, runtime=dict(
        read.zone.runtime, services=("ssh",), ports=(("8080", "tcp"),), protocols=("gre",),
        source_ports=(("53", "udp"),), forward_ports=(("80", "tcp", "8080", ""),), masquerade=True,
        icmp_block_inversion=True, icmp_blocks=("echo-request",), sources=("192.0.2.0/24",),
        rules_str=('rule service name="http" accept',)))
    host = replace(read.policies[1], runtime=dict(read.policies[1].runtime, target="ACCEPT",
                                                  ingress_zones=("drop", "public")))
    page = report(fw=LayerPlan("firewalld", ("drift",), read=replace(read, zone=zone,
                                                                      policies=(read.policies[0], host))))
    data = json.loads(json.dumps(audit_render.as_dict(page)))
    items = {e["name"]: [(i["kind"], i["value"], i["key"]) for i in e["items"]] for e in data["entries"]}
    assert items["calfwd"] == [
        ("forward port", "port=80:proto=tcp:toport=8080:toaddr=", ""), ("icmp block inversion", "on", ""),
        ("icmp type", "echo-request", ""), ("interface", "cali+", "interfaces"), ("interface", "tunl0", "interfaces"),
        ("masquerade", "on", ""), ("port", "8080/tcp", ""), ("protocol", "gre", ""),
        ("rich rule", 'rule service name="http" accept', ""), ("service", "ssh", ""),
        ("source", "192.0.2.0/24", ""), ("source port", "53/udp", ""), ("target", "ACCEPT", "zone")]
    assert all(i["why"] == NOT_CALFWDS for e in data["entries"] for i in e["items"] if not i["key"])
    assert items["calfwd-host"][-1] == ("target", "ACCEPT", "")
    summary = next(e["summary"] for e in data["entries"] if e["name"] == "calfwd-host")
    assert summary.startswith("traffic from zone drop, zone public (NOT in calfwd's config) to this host")


def test_a_wireguard_device_opens_its_port_and_the_page_says_why():
    facts = replace(FACTS, wireguard_devices=("wireguard.cali",))
    fw = LayerPlan("firewalld", (), read=actual(host_ports=(("179", "tcp"), ("51820", "udp"))))
    host = next(e for e in report(fw=fw, facts=facts).entries if e.name == "calfwd-host")
    item = next(i for i in host.items if i.value == "51820/udp")
    assert item.why.startswith("WireGuard") and item.key == "(Calico's device wireguard.cali exists on this host)"


def test_unreadable_layers_failed_checks_and_nft_drift_are_never_ok():
    assert report().ok
    broken = report(fw=LayerPlan("firewalld", (), error="the bus or firewalld refused calfwd"))
    assert not broken.ok and broken.unreadable == ("firewalld: the bus or firewalld refused calfwd",)
    assert broken.firewalld_note == "could not be read: the bus or firewalld refused calfwd"
    assert [e.kind for e in broken.entries] == ["nftables table"]
    failed = report(seen=replace(SEEN, check="failed", check_output="INVALID_TARGET: NONSENSE"))
    assert not failed.ok and "  failed\n    INVALID_TARGET: NONSENSE\n" in audit_render.text(failed)
    assert not report(nft_actions=("table inet calfwd is missing",)).ok
    held = "interface tunl0 is bound to zone 'trusted' (runtime) by someone else"
    elsewhere = report(fw=LayerPlan("firewalld", (), conflicts=(held,), read=actual(interfaces=("cali+",))))
    assert not elsewhere.ok and elsewhere.differences == ("firewalld: " + held,)
    assert not report(seen=replace(SEEN, unreadable=("nftables: denied",))).ok


def test_firewalld_not_running_lists_nothing_it_would_accept():
    stopped = HostFacts()
    page = report(fw=LayerPlan("firewalld", (), note="firewalld is not running; nothing to do until it starts"),
                  facts=stopped, seen=replace(SEEN, check="not run", check_output="firewalld is not running"))
    assert page.ok and page.firewalld == (("state", "not running"),)
    assert [e.kind for e in page.entries] == ["nftables table"]
    assert not any("default zone" in line for line in page.untouched)


def test_json_has_a_stable_schema():
    data = json.loads(json.dumps(audit_render.as_dict(report())))
    assert list(data) == ["schema", "ok", "host", "date", "version", "config_path", "firewalld", "firewalld_note",
                          "entries", "nft_rules", "untouched", "check", "check_output", "differences",
                          "unreadable", "cni"]
    assert data["cni"] == {"kind": "calico", "why": "not judged"}
    assert data["schema"] == 1 and data["ok"] is True
    assert data["firewalld"]["default_zone_target"] == "DROP"
    for entry in data["entries"]:
        assert set(entry) == {"kind", "name", "summary", "why", "items", "present"}
        assert all(set(item) == {"kind", "value", "why", "key"} for item in entry["items"])
    host = next(e for e in data["entries"] if e["name"] == "calfwd-host")
    assert [(i["kind"], i["value"], i["key"]) for i in host["items"]] == [
        ("port", "179/tcp", "host_ports: bgp"), ("protocol", "4", "host_ports: ipip"),
        ("target", "CONTINUE", "host_ports")]


def test_firewalld_1x_catch_all_service_is_listed_with_its_ports_and_the_default_zone_line_says_so():
    facts = replace(FACTS, firewalld_version="1.3.3")
    read = replace(actual(host_ports=(("179", "tcp"),)),
                   # The saved service gained 2222/tcp; firewalld has not loaded it: not in effect.
                   service=ObjectState("calfwd-host", permanent={"ports": (("179", "tcp"), ("2222", "tcp")),
                                                                 "protocols": ("4",)},
                                       runtime={"ports": (("179", "tcp"),), "protocols": ("4",),
                                                "source_ports": (("53", "udp"),)}),
                   catch_all=ObjectState("drop", runtime={"target": "DROP", "services": ("calfwd-host",)}))
    page = report(fw=LayerPlan("firewalld", (), read=read), facts=facts)
    service = next(e for e in page.entries if e.kind == "service")
    assert service.present and [(i.value, i.key) for i in service.items] == [
        ("179/tcp", "host_ports: bgp"), ("4", "host_ports: ipip"), ("53/udp", "")]
    assert service.items[-1].kind == "source port" and service.items[-1].why == NOT_CALFWDS
    assert service.summary.endswith("as firewalld has it loaded (runtime)")
    assert "catch-all" in service.why
    assert page.untouched[0] == ("the default zone drop and its target DROP: not changed, except that calfwd's "
                                 "service calfwd-host is added to it (above)")
    gone = replace(read, catch_all=ObjectState("drop", runtime={"target": "DROP"}))
    missing = next(e for e in report(fw=LayerPlan("firewalld", (), read=gone), facts=facts).entries
                   if e.kind == "service")
    assert not missing.present and missing.summary == "NOT in effect in zone drop"


def test_a_bad_config_is_exit_2_with_one_line_naming_file_and_key(tmp_path, capsys):
    from calfwd import cli

    path = tmp_path / "calfwd.toml"
    path.write_text('[calico]\nip_pools = ["10.244.0.0/16"]\nhost_ports = ["telnet"]\n')
    assert cli.main(["--config", str(path), "audit", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and str(path) in err and "host_ports" in err
    assert "Traceback" not in err


def test_on_canal_flannels_devices_and_port_are_calfwds_and_say_why():
    """The zone binds flannel's devices and the host policy opens flannel's port on Canal: the
    audit names them as calfwd's, from [cni] kind, never as someone else's."""
    from dataclasses import replace as with_
    from calfwd.judge.cni import CniVerdict
    canal = with_(FACTS, cni=CniVerdict("canal", "flannel's flannel.1 with Calico's policy", ("flannel.1",), (8472,),
                                        (), False))
    want = desired(cfg.parse(CONFIG, "/etc/calfwd/calfwd.toml"), canal)
    fw = LayerPlan("firewalld", (), read=actual(host_ports=(("8472", "udp"),), interfaces=want.firewalld.zone.interfaces))
    page = report(fw=fw, facts=canal)
    zone = next(e for e in page.entries if e.kind == "zone")
    flannel = next(i for i in zone.items if i.value == "flannel.1")
    assert (flannel.why, flannel.key) == ("flannel's VXLAN device, IPv4 (pod traffic from other nodes)", "cni.kind")
    assert NOT_CALFWDS not in [i.why for i in zone.items]
    host = next(e for e in page.entries if e.name == "calfwd-host")
    port = next(i for i in host.items if i.kind == "port")
    assert port.value == "8472/udp" and port.key == "cni.kind" and "flannel's backend" in port.why
    assert "CNI:       canal (flannel's flannel.1 with Calico's policy)" in audit_render.text(page)


def test_firewalld_2x_settings_are_shown_on_the_release_that_has_them():
    from calfwd.audit.build import settings
    conf = {"ReloadPolicy": "INPUT:DROP,FORWARD:REJECT,OUTPUT:DROP", "NftablesFlowtable": "eth0 cali+",
            "StrictForwardPorts": "yes"}
    assert settings(conf, "1.3.3") == ()
    assert [k for k, _ in settings(conf, "2.0.2")] == ["nftables_flowtable"]
    shown = dict(settings(conf, "2.3.1"))
    assert shown["reload_policy"] == ("INPUT:DROP,FORWARD:REJECT,OUTPUT:DROP: new forwarded connections during a "
                                      "reload are rejected")
    assert shown["nftables_flowtable"].startswith("eth0 cali+: their established flows skip")
    assert shown["strict_forward_ports"].startswith("yes: every DNAT")
    stock = dict(settings({}, "2.3.1"))
    assert stock == {"reload_policy": "unset (INPUT:DROP,FORWARD:DROP,OUTPUT:DROP): new forwarded connections "
                                      "during a reload are dropped",
                     "nftables_flowtable": "off", "strict_forward_ports": "no"}
    assert "(not valid" in dict(settings({"ReloadPolicy": "FORWARD:MAYBE"}, "2.1.0"))["reload_policy"]
    page = audit_render.text(report(seen=SEEN.__class__(**{**SEEN.__dict__, "firewalld_settings": settings({}, "2.3.1")})))
    assert "  reload policy:       unset (INPUT:DROP" in page
