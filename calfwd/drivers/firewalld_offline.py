"""firewalld's configuration files while firewalld is stopped: read here, changed only by
firewalld's own offline tool, firewall-offline-cmd (argument lists, no shell).

Only `calfwd cleanup` uses this, and only when nobody owns firewalld's bus name: editing
the files under a live firewalld would be overwritten by it, or half-loaded at its next reload.
The tool is always given `--system-config DIR`, so a test's directory is the only one touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from typing import List, Optional, Tuple

from calfwd.plan.firewalld_model import Op, RemoveFromZone, RemovePolicy, RemoveService, RemoveZone
from calfwd.plan.firewalld_offline import DiskObject, OnDisk
from calfwd.plan.firewalld_settings import OWNER_MARK

TOOL = "firewall-offline-cmd"


class OfflineError(Exception):
    """firewall-offline-cmd is missing, failed or timed out; the message says which."""


def read_disk(directory: str) -> OnDisk:
    """The zone and policy files under DIR; a missing directory is an empty one (no firewalld)."""
    return OnDisk(directory, _read_kind(directory, "zones"), _read_kind(directory, "policies"),
                  _read_kind(directory, "services"))


def _read_kind(directory: str, sub: str) -> Tuple[DiskObject, ...]:
    path = os.path.join(directory, sub)
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError:
        return ()
    return tuple(_read_file(os.path.join(path, n), n[:-len(".xml")]) for n in names if n.endswith(".xml"))


def _read_file(path: str, name: str) -> DiskObject:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        return DiskObject(name, unreadable=f"{path} cannot be read: {exc.strerror or exc}")
    try:
        root = ElementTree.fromstring(raw)
    except ElementTree.ParseError as exc:
        return DiskObject(name, unreadable=f"{path} is not valid XML ({exc})",
                          marked=OWNER_MARK.encode() in raw)
    sources = []
    for element in root.findall("source"):
        if element.get("ipset"):
            sources.append("ipset:" + element.get("ipset", ""))
        else:
            sources.append(element.get("address") or element.get("mac") or "")
    return DiskObject(
        name,
        description=" ".join((root.findtext("description") or "").split()),
        interfaces=tuple(e.get("name", "") for e in root.findall("interface")),
        sources=tuple(sources),
        zones=tuple(e.get("name", "") for e in root.findall("ingress-zone") + root.findall("egress-zone")),
        services=tuple(e.get("name", "") for e in root.findall("service")),
    )


def offline_args(op: Op) -> List[str]:
    """One operation as firewall-offline-cmd options; `--opt=value` so a value is never an option."""
    if isinstance(op, RemovePolicy):
        return [f"--delete-policy={op.name}"]
    if isinstance(op, RemoveZone):
        return [f"--delete-zone={op.name}"]
    if isinstance(op, RemoveService):
        return [f"--delete-service={op.name}"]
    if isinstance(op, RemoveFromZone) and op.permanent and op.kind == "service":
        # Not --remove-service: that is a lokkit option (the default zone), refused with --zone.
        return [f"--zone={op.zone}", f"--remove-service-from-zone={op.item}"]
    if isinstance(op, RemoveFromZone) and op.permanent:
        return [f"--zone={op.zone}", f"--remove-{op.kind}={op.item}"]
    raise ValueError(f"firewall-offline-cmd cannot: {op.description}")


class OfflineFirewalld:
    """firewalld's files under one directory (default /etc/firewalld)."""

    def __init__(self, directory: str, tool: Optional[str] = None, timeout: float = 60.0) -> None:
        self.directory = directory
        self.tool = tool
        self.timeout = timeout

    def read(self) -> OnDisk:
        return read_disk(self.directory)

    def run(self, op: Op) -> None:
        """One operation, one run of the tool; raises OfflineError with the tool's own words."""
        tool = self.tool or shutil.which(TOOL)
        if not tool:
            raise OfflineError(f"{TOOL} is not installed (it comes with firewalld): start firewalld "
                               "and run calfwd cleanup again")
        argv = [tool, f"--system-config={self.directory}"] + offline_args(op)
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=self.timeout, cwd="/", check=False)
        except subprocess.TimeoutExpired:
            raise OfflineError(f"{TOOL} did not finish within {self.timeout:.0f} s") from None
        except OSError as exc:
            raise OfflineError(f"{TOOL}: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            lines = [line.strip() for line in (proc.stderr + "\n" + proc.stdout).splitlines() if line.strip()]
            raise OfflineError(f"{TOOL} exited {proc.returncode}: {lines[-1] if lines else 'no message'}")
