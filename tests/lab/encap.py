"""Calico's encapsulations between cluster nodes, built as Felix (and BIRD) build them.

- vxlan: `vxlan.calico`, VNI 4096, 4789/udp, MTU 1450, no learning; per remote node a
  permanent neighbour entry (its VTEP address -> its VTEP MAC), a permanent FDB entry (VTEP
  MAC -> its underlay address) and a route to its block via its VTEP address, onlink.
- ipip: `tunl0` (the ipip module's fallback device), MTU 1480, routes to remote blocks via the
  remote node's underlay address, onlink. Where the kernel has no ipip module, `tunl0` is a
  TUN device served by ipip_standin.py, which puts real protocol-4 packets on the underlay.
- wireguard: `wireguard.cali`, 51820/udp, fwmark 0x100000, MTU 1440, one peer per remote node
  (allowed IPs: its block and tunnel address); Calico's routing rule `not fwmark
  0x100000/0x100000 lookup 1` and remote blocks in table 1. Where the kernel has no wireguard
  module, wireguard-go (Debian's package) serves the same device from userspace.
- none: remote blocks routed over the underlay, as BIRD installs them (BGP on 179/tcp).
- flannel: Canal's (and k3s's) VXLAN as flanneld builds it: `flannel.1`, VNI 1, the kernel's
  port 8472, no learning, the lease's network address on the device, per remote node a
  permanent neighbour entry, FDB entry and a route to its lease via its address, onlink
  (flannel's pkg/backend/vxlan: device.go, vxlan_network.go); no route protocol of Felix's.

Which of these the kernel has is checked by creating a throw-away device in the node's
namespace (this machine has no modprobe, and its kernel may have neither ipip nor wireguard).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Sequence, Tuple

from . import probe
from .firewalld import PRIVATE_RUN
from .netns import Netns

ENCAPSULATIONS = ("vxlan", "ipip", "none", "wireguard", "flannel")
DEVICES: Dict[str, str] = {"vxlan": "vxlan.calico", "ipip": "tunl0", "wireguard": "wireguard.cali",
                           "flannel": "flannel.1"}
FLANNEL_VNI = 1
FLANNEL_PORT = 8472
VXLAN_VNI = 4096
VXLAN_PORT = 4789
WIREGUARD_PORT = 51820
WIREGUARD_MARK = "0x100000"
WIREGUARD_TABLE = "1"
STANDIN = Path(__file__).resolve().parent / "ipip_standin.py"
PROTO_BIRD = "bird"  # BIRD's routes (ipip, none); Felix's VXLAN routes carry proto 80
PROTO_FELIX = "80"


@dataclass(frozen=True)
class Endpoint:
    """What a tunnel needs to know about a node: itself or a peer."""
    name: str
    underlay: str  # the node's address on the LAN (uplink eth0)
    block: str  # its IPAM block, e.g. 198.18.64.64/26
    tunnel_ip: str  # the block's first address, on vxlan.calico / tunl0 / wireguard.cali
    vtep_mac: str
    public_key: str = ""  # WireGuard only


def kernel_has(netns: Netns, kind: str) -> bool:
    """Can this kernel create a device of `kind` (ipip, wireguard, vxlan)? Tried, then removed."""
    args = ("type", kind) if kind != "vxlan" else ("type", "vxlan", "id", "1", "dstport", "4789")
    made = netns.run("ip", "link", "add", "cfwprobe0", *args, check=False).returncode == 0
    if made:
        netns.run("ip", "link", "del", "cfwprobe0", check=False)
    return made


def wireguard_keys(netns: Netns) -> Tuple[str, str]:
    """(private, public) from `wg genkey` / `wg pubkey`: no network, any namespace."""
    private = netns.run("wg", "genkey").stdout.strip()
    public = netns.run("wg", "pubkey", input=private + "\n").stdout.strip()
    return private, public


class Tunnel:
    """One node's side of the encapsulation; build() makes it and routes every peer's block."""

    kind = "none"
    standin = False  # True when a userspace stand-in replaces a missing kernel module

    def __init__(self, netns: Netns, workdir: Path, local: Endpoint, peers: Sequence[Endpoint],
                 uplink: str = "eth0"):
        self.netns, self.workdir, self.local, self.peers, self.uplink = netns, Path(workdir), local, peers, uplink

    @property
    def device(self) -> str:
        return DEVICES.get(self.kind, self.uplink)

    def build(self) -> None:
        for peer in self.peers:
            self.netns.run("ip", "route", "replace", peer.block, "via", peer.underlay, "dev", self.uplink,
                           "proto", PROTO_BIRD)

    def _address(self, mtu: int) -> None:
        self.netns.run("ip", "link", "set", self.device, "mtu", mtu, "up")
        self.netns.run("ip", "addr", "add", self.local.tunnel_ip + "/32", "dev", self.device)


class Vxlan(Tunnel):
    kind = "vxlan"
    vni, port = VXLAN_VNI, VXLAN_PORT
    proto: Tuple[str, ...] = ("proto", PROTO_FELIX)  # Felix marks its routes; flannel does not

    def build(self) -> None:
        dev, run = self.device, self.netns.run
        run("ip", "link", "add", dev, "type", "vxlan", "id", self.vni, "local", self.local.underlay,
            "dev", self.uplink, "dstport", self.port, "nolearning")
        run("ip", "link", "set", dev, "address", self.local.vtep_mac)
        self._address(1450)
        for peer in self.peers:
            run("ip", "neigh", "replace", peer.tunnel_ip, "lladdr", peer.vtep_mac, "dev", dev, "nud", "permanent")
            run("bridge", "fdb", "replace", peer.vtep_mac, "dev", dev, "dst", peer.underlay, "self", "permanent")
            run("ip", "route", "replace", peer.block, "via", peer.tunnel_ip, "dev", dev, "onlink", *self.proto)


class FlannelVxlan(Vxlan):
    kind = "flannel"
    vni, port = FLANNEL_VNI, FLANNEL_PORT
    proto = ()


class Ipip(Tunnel):
    kind = "ipip"

    def build(self) -> None:
        dev, run = self.device, self.netns.run
        if kernel_has(self.netns, "ipip"):  # the module's fallback tunl0 exists in every namespace
            run("ip", "link", "show", dev)
        else:
            self.standin = True
            run("ip", "tuntap", "add", "dev", dev, "mode", "tun")
            routes = ["%s=%s" % (p.block, p.underlay) for p in self.peers]
            proc = self.netns.popen(probe.PYTHON, str(STANDIN), dev, *routes, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError("ipip stand-in failed: %s %s" % (line, proc.stderr.read()))
        self._address(1480)
        for peer in self.peers:
            run("ip", "route", "replace", peer.block, "via", peer.underlay, "dev", dev, "onlink",
                "proto", PROTO_BIRD)


class Wireguard(Tunnel):
    kind = "wireguard"

    def __init__(self, *args, private_key: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.private_key = private_key
        self.run_dir = self.workdir / "wireguard-run"  # wireguard-go's UAPI socket, private to this node

    def wg(self, *args, check: bool = True):
        """`wg` against this node's device (through the private /run when wireguard-go serves it)."""
        argv = ("wg",) + args
        if self.standin:
            argv = (probe.PYTHON, "-c", PRIVATE_RUN, str(self.run_dir), "/usr/bin/wg") + args
        return self.netns.run(*argv, check=check)

    def build(self) -> None:
        dev, run = self.device, self.netns.run
        if kernel_has(self.netns, "wireguard"):
            run("ip", "link", "add", dev, "type", "wireguard")
        else:
            self.standin = True
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.netns.popen(probe.PYTHON, "-c", PRIVATE_RUN, str(self.run_dir), "/usr/bin/wireguard-go",
                             "-f", dev, env={"LOG_LEVEL": "error"})
            deadline = time.monotonic() + 10
            while self.wg("show", dev, check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("wireguard-go did not serve %s within 10 s" % dev)
                time.sleep(0.05)
        key = self.workdir / "wireguard.key"
        key.write_text(self.private_key + "\n")
        key.chmod(0o600)
        args = ["set", dev, "listen-port", str(WIREGUARD_PORT), "fwmark", WIREGUARD_MARK,
                "private-key", str(key)]
        for peer in self.peers:
            args += ["peer", peer.public_key, "endpoint", "%s:%d" % (peer.underlay, WIREGUARD_PORT),
                     "allowed-ips", "%s,%s/32" % (peer.block, peer.tunnel_ip)]
        self.wg(*args)
        self._address(1440)
        run("ip", "rule", "add", "not", "fwmark", "%s/%s" % (WIREGUARD_MARK, WIREGUARD_MARK),
            "lookup", WIREGUARD_TABLE, "priority", "99")
        for peer in self.peers:
            run("ip", "route", "replace", peer.block, "dev", dev, "scope", "link", "table", WIREGUARD_TABLE)


TUNNELS = {"vxlan": Vxlan, "ipip": Ipip, "none": Tunnel, "wireguard": Wireguard, "flannel": FlannelVxlan}
