"""doctor on Canal and flannel nodes: NetworkManager and nm-cloud-setup, the two host services
RKE2's known issues name (rke2-docs docs/known_issues.md, "NetworkManager"; rancher/rke2#1053).

NetworkManager manages every interface it is not told to leave alone, and its route handling
interferes with the routes flannel and Calico put on their devices and veths: RKE2 asks for a
keyfile drop-in listing `flannel*` and `cali*` (and Calico's tunnels) as unmanaged-devices.
nm-cloud-setup adds a routing table of its own that bypasses the CNI's routes; RKE2 says no
setting avoids it, so it must be disabled. Pure: reads.py reads the files.
"""

from __future__ import annotations

import fnmatch
from typing import Iterable, List, Sequence, Tuple

from calfwd.doctor.findings import INFO, OK, WARNING, Finding, unknown_finding
from calfwd.doctor.snapshot import HostSnapshot, Read

# RKE2's drop-in, word for word the devices its known-issues page lists.
RKE2_UNMANAGED = ("interface-name:flannel*;interface-name:cali*;interface-name:tunl*;interface-name:vxlan.calico;"
                  "interface-name:vxlan-v6.calico;interface-name:wireguard.cali;interface-name:wg-v6.cali")
# Sample names of the devices that must be unmanaged, per CNI: flannel's VXLAN device and a veth
# of Calico's CNI plugin (every `cali` + 11 hex digits).
MUST_BE_UNMANAGED = {"canal": ("flannel.1", "cali0123456789a"), "flannel": ("flannel.1",)}


def unmanaged_specs(files: Iterable[Tuple[str, str]]) -> Tuple[str, ...]:
    """NetworkManager's effective [keyfile] unmanaged-devices from its configuration files, in
    the order it reads them (NetworkManager.conf, then conf.d by file name): a later `=` sets
    the list, `+=` appends, `-=` removes items."""
    specs: List[str] = []
    for _name, text in files:
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
                continue
            if section != "keyfile" or "=" not in line:
                continue
            key, _sep, value = line.partition("=")
            key = key.strip()
            items = [v.strip() for v in value.replace(",", ";").split(";") if v.strip()]
            if key == "unmanaged-devices":
                specs = items
            elif key == "unmanaged-devices+":
                specs += [i for i in items if i not in specs]
            elif key == "unmanaged-devices-":
                specs = [s for s in specs if s not in items]
    return tuple(specs)


def unmanaged(name: str, specs: Sequence[str]) -> bool:
    """Whether an interface name matches one of the specs (interface-name:GLOB, :=exact, :~glob
    case-insensitively; other kinds, by MAC or driver, are not by name and not counted)."""
    for spec in specs:
        kind, _sep, pattern = spec.partition(":")
        if kind != "interface-name" or not pattern:
            continue
        if pattern.startswith("="):
            if name == pattern[1:]:
                return True
        elif pattern.startswith("~"):
            if fnmatch.fnmatchcase(name.lower(), pattern[1:].lower()):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def check_networkmanager(snap: HostSnapshot) -> List[Finding]:
    kind = snap.cni.kind if snap.cni is not None else ""
    if kind not in MUST_BE_UNMANAGED:
        return []
    unknown = unknown_finding(snap, "networkmanager", Read.NETWORKMANAGER)
    if unknown:
        return [unknown]
    if snap.networkmanager is None:
        return []  # NetworkManager not in use
    managed = [n for n in MUST_BE_UNMANAGED[kind] if not unmanaged(n, snap.networkmanager)]
    if not managed:
        return [Finding(OK, "networkmanager", f"NetworkManager leaves flannel's and Calico's devices alone "
                        f"(unmanaged-devices: {';'.join(snap.networkmanager)})")]
    shown = ", ".join(n.replace("0123456789a", "*") if n.startswith("cali") else n.rstrip(".1") + "*"
                      for n in managed)
    return [Finding(WARNING, "networkmanager", f"NetworkManager manages {shown} on this {kind} node",
                    "its route handling interferes with the routes flannel and Calico put on their devices "
                    "and pod veths (RKE2's known issue)",
                    "create /etc/NetworkManager/conf.d/rke2-canal.conf with [keyfile] and "
                    f"unmanaged-devices={RKE2_UNMANAGED}, then systemctl reload NetworkManager "
                    "(reboot if the cluster already runs on this node)")]


def check_nm_cloud_setup(snap: HostSnapshot) -> List[Finding]:
    kind = snap.cni.kind if snap.cni is not None else ""
    if kind not in MUST_BE_UNMANAGED:
        return []
    unknown = unknown_finding(snap, "nm-cloud-setup", Read.NM_CLOUD_SETUP)
    if unknown:
        return [unknown]
    if not snap.nm_cloud_setup:
        return [Finding(INFO, "nm-cloud-setup", "nm-cloud-setup is not enabled")]
    return [Finding(WARNING, "nm-cloud-setup", f"nm-cloud-setup is enabled ({', '.join(snap.nm_cloud_setup)})",
                    "it adds a routing table of its own that bypasses the CNI's routes; no setting avoids "
                    "it (rancher/rke2#1053)",
                    "systemctl disable nm-cloud-setup.service nm-cloud-setup.timer, then reboot "
                    "(needed before NetworkManager-1.30.0-11.el8_4)")]
