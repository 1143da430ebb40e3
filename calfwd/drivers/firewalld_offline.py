"""firewalld's configuration files while firewalld is stopped: read here, changed only by
firewalld's own offline tool, firewall-offline-cmd (argument lists, no shell).

`calfwd cleanup` and `calfwd apply --offline` use this, and only when nobody owns firewalld's
bus name (or for another directory, an image's): editing the files under a live firewalld would
be overwritten by it, or half-loaded at its next reload.
The tool is always given `--system-config DIR`, so a test's directory is the only one touched.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ElementTree
from typing import Any, Dict, List, Optional, Tuple

from calfwd.drivers.errors import OfflineError
from calfwd.drivers.textfile import file_kind, read_regular
from calfwd.plan.firewalld.model import Op
from calfwd.plan.firewalld.offline_apply import Args, DiskConfig, removal_args
from calfwd.plan.firewalld.offline import DiskObject, OnDisk
from calfwd.plan.firewalld.settings import OWNER_MARK

TOOL = "firewall-offline-cmd"
SHIPPED_DIR = "/usr/lib/firewalld"  # the tool's --default-config: stock zones and policies
# What firewalld (so firewall-offline-cmd, at every run) reads under its configuration
# directory: its files, and every *.xml in these subdirectories.
CONFIG_FILES = ("firewalld.conf", "direct.xml", "lockdown-whitelist.xml")
CONFIG_DIRS = ("zones", "policies", "services", "icmptypes", "ipsets", "helpers")


def read_disk(directory: str) -> OnDisk:
    """The zone and policy files under DIR; a missing directory is an empty one (no firewalld)."""
    return OnDisk(directory, _read_kind(directory, "zones"), _read_kind(directory, "policies"),
                  _read_kind(directory, "services"))


def nonregular_files(directory: str) -> List[str]:
    """One line per file firewalld keeps under `directory` that is something else (a FIFO,
    device, socket; through a symbolic link too): calfwd would block opening it, and so would
    firewall-offline-cmd, which reads them all at every run."""
    paths = [os.path.join(directory, name) for name in CONFIG_FILES]
    for sub in CONFIG_DIRS:
        try:
            names = sorted(os.listdir(os.path.join(directory, sub)))
        except OSError:  # missing, or not a directory: the tool says so if it matters
            continue
        paths += [os.path.join(directory, sub, n) for n in names if n.endswith(".xml")]
    found = []
    for path in paths:
        try:
            info = os.stat(path)  # a link is judged by what it names
        except OSError:  # missing, or a dangling link: nothing is opened that could block
            continue
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            found.append(f"{path} is {file_kind(info.st_mode)}, not a regular file (calfwd and "
                         "firewall-offline-cmd would wait on it)")
    return found


def _read_kind(directory: str, sub: str) -> Tuple[DiskObject, ...]:
    path = os.path.join(directory, sub)
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError:
        return ()
    return tuple(_read_file(os.path.join(path, n), n[:-len(".xml")]) for n in names if n.endswith(".xml"))


def _read_file(path: str, name: str) -> DiskObject:
    try:
        raw = read_regular(path, follow=True)  # a FIFO is refused, not waited on
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
    """One removal as firewall-offline-cmd options (cleanup's; spelled by the pure planner)."""
    return removal_args(op)


class OfflineFirewalld:
    """firewalld's files under one directory (default /etc/firewalld)."""

    def __init__(self, directory: str, tool: Optional[str] = None, timeout: float = 60.0,
                 shipped: str = SHIPPED_DIR) -> None:
        self.directory = directory
        self.tool = tool
        self.timeout = timeout
        self.shipped = shipped

    def read(self) -> OnDisk:
        return read_disk(self.directory)

    def read_config(self) -> DiskConfig:
        """Every zone, policy and service file, the directory's own over the shipped ones."""
        found: Dict[str, Dict[str, Dict[str, Any]]] = {}
        for sub in ("zones", "policies", "services"):
            found[sub] = {}
            for base in (self.shipped, self.directory):
                for name, root in _xml_files(os.path.join(base, sub)):
                    found[sub][name] = _settings(root)
                    if sub == "policies" and root.find("rule") is not None:
                        found[sub][name]["rich_rules"] = tuple(
                            line for line in self._tool(f"--policy={name}", "--list-rich-rules").splitlines()
                            if line.strip())
        return DiskConfig(self.directory, found["zones"], found["policies"], found["services"])

    def version(self) -> str:
        return self._tool("--version").strip()

    def run(self, op: Op) -> None:
        """One operation, one run of the tool; raises OfflineError with the tool's own words."""
        self._tool(*offline_args(op))

    def run_args(self, args: Args) -> None:
        self._tool(*args)

    def _tool(self, *args: str) -> str:
        tool = self.tool or shutil.which(TOOL)
        if not tool:
            raise OfflineError(f"{TOOL} is not installed (it comes with firewalld)")
        argv = [tool, f"--system-config={self.directory}", *args]
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
        return proc.stdout


def _xml_files(path: str) -> List[Tuple[str, Any]]:
    """(name, parsed root) per NAME.xml; a missing directory has none. A file firewalld could
    not load either is an error: calfwd will not plan against a guess."""
    try:
        names = sorted(n for n in os.listdir(path) if n.endswith(".xml"))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        try:
            out.append((name[:-len(".xml")], ElementTree.fromstring(read_regular(os.path.join(path, name),
                                                                                  follow=True))))
        except ElementTree.ParseError as exc:
            raise OSError(f"{os.path.join(path, name)} is not valid XML ({exc})") from None
    return out


def _settings(root: Any) -> Dict[str, Any]:
    """A zone, policy or service file as firewalld's settings dict (the keys calfwd compares)."""
    def names(tag: str, attr: str = "name") -> Tuple[str, ...]:
        return tuple(e.get(attr, "") for e in root.findall(tag))

    def pairs(tag: str) -> Tuple[Tuple[str, str], ...]:
        return tuple((e.get("port", ""), e.get("protocol", "")) for e in root.findall(tag))

    sources = tuple(("ipset:" + e.get("ipset", "")) if e.get("ipset") else (e.get("address") or e.get("mac") or "")
                    for e in root.findall("source"))
    default_target = "CONTINUE" if root.tag == "policy" else "default"
    settings: Dict[str, Any] = {
        "target": root.get("target", default_target),
        "short": root.findtext("short") or "",
        "description": " ".join((root.findtext("description") or "").split()),
        "interfaces": names("interface"), "sources": sources, "services": names("service"),
        "ports": pairs("port"), "protocols": names("protocol", "value"), "source_ports": pairs("source-port"),
        "icmp_blocks": names("icmp-block"),
        "forward_ports": tuple((e.get("port", ""), e.get("protocol", ""), e.get("to-port", ""), e.get("to-addr", ""))
                               for e in root.findall("forward-port")),
        "ingress_zones": names("ingress-zone"), "egress_zones": names("egress-zone"),
        "masquerade": root.find("masquerade") is not None,
    }
    if root.tag == "policy":
        settings["priority"] = int(root.get("priority", "-1"))
    return settings
