"""Integration-test lab: real firewalld, real nftables, real kernel, in network namespaces.

Import it as ``lab`` (tests/conftest.py puts tests/ on sys.path, and the repo root for
``calfwd``); never as ``tests.lab``, which would load a second copy of every module::

    from lab import Lab, Addressing
    from lab.netns import Netns, unique_id

Tests normally take the function-scoped ``lab`` fixture from tests/conftest.py: the
topology is built, the private bus runs, Calico's rules are installed, firewalld is
*not* started (call ``lab.firewalld.start()``). See topology.py for the picture.

Main pieces:
  Lab            namespaces node/pod/proxy/peer/lan; .connect(), .pod_to_proxy(), .peer_to_pod()
  Netns          .run(), .popen(), .sysctl(), .close() kills everything in it and deletes it
  PrivateBus     dbus-daemon in the node ns on unix:abstract=/calfwd-test/<id>; start/stop/restart
  Firewalld      start/stop/kill/restart/reload, firewall_cmd(*args), state(), configure(**conf)
  versions       fetch("0.9.3" | "1.3" | "2.3" | "own"): which firewalld Lab(firewalld=...) runs
  CalicoSim      install/restore (Felix resync)/present/missing/remove_nat_outgoing
  probe          start_echo_server(ns, port), connect(ns, ip, port, timeout)
  Cluster        (lab.cluster) two Calico nodes, tunnels (lab.encap), Services (lab.services);
                 every path and the step matrix in lab.paths

Rules: nothing runs in the root namespace except `ip netns add/delete/pids/list`; every
D-Bus client must get DBUS_SYSTEM_BUS_ADDRESS=lab.bus.address (the node namespace's
default environment already has it); run python in namespaces with /usr/bin/python3.
"""

from __future__ import annotations

import os
import shutil
from typing import Optional

from .calico import CalicoSim, Workload
from .dbus import PrivateBus
from .firewalld import Firewalld
from .netns import CommandError, Netns, SYSTEM_PATH, add_veth, list_namespaces
from .probe import connect, start_echo_server
from .topology import Addressing, Lab

REQUIRED_TOOLS = ("ip", "sysctl", "firewalld", "firewall-cmd", "dbus-daemon", "iptables-nft",
                  "iptables-nft-restore", "ip6tables-nft", "ip6tables-nft-restore", "ipset", "mount")


def unavailable() -> Optional[str]:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "lab needs root (network namespaces, firewalld)"
    missing = [t for t in REQUIRED_TOOLS if not shutil.which(t, path=SYSTEM_PATH)]
    if not os.access("/usr/bin/python3", os.X_OK):
        missing.append("/usr/bin/python3")
    if missing:
        return "lab needs missing tools: " + ", ".join(missing)
    return None


__all__ = ["Addressing", "CalicoSim", "CommandError", "Firewalld", "Lab", "Netns", "PrivateBus",
           "Workload", "add_veth", "connect", "list_namespaces", "start_echo_server", "unavailable"]
