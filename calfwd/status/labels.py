"""[labels] features_file: node labels for node-feature-discovery, without a privileged pod.

NFD's local source reads `key=value` lines from files in its features.d directory
(/etc/kubernetes/node-feature-discovery/features.d/ by default) and labels the node
`feature.node.kubernetes.io/<key>=<value>`. calfwd writes stable facts only, ones a scheduler
or a fleet report can select on: its version, the CNI it serves, firewalld's version and
backend, and the flush guard's state. Health is not a label (it changes by the second and
would churn the Node object): that stays with the NPD condition.

The file is rewritten atomically (drivers/textfile.write_atomic) only when a fact changed.
What is at the path and is not calfwd's (a symbolic link, a FIFO, a file of another user, one
that does not begin with calfwd's header) is refused: never followed, never replaced, said
once. cleanup removes the file calfwd wrote and nothing else.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from calfwd.drivers import textfile

WRITE_EVENT = "labels-write-failed"
HEADER = "# calfwd: node labels for node-feature-discovery (written by calfwd; removed by calfwd cleanup)\n"
PREFIX = "calfwd-"
_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def label_value(text: str) -> str:
    """A Kubernetes label value: at most 63 characters of [A-Za-z0-9_.-], beginning and ending
    with an alphanumeric; "" (the label is left out) when nothing of it is left."""
    value = _VALUE_BAD.sub("-", str(text))[:63].strip("-_.")
    return value


def facts(version: str, cni: str, firewalld_version: str, backend: str, guard_state: str) -> Dict[str, str]:
    """The labels, by key without NFD's prefix; facts calfwd does not know are left out."""
    found = {"version": version, "cni": cni, "firewalld-version": firewalld_version,
             "firewalld-backend": backend, "flush-guard": guard_state}
    return {PREFIX + key: label_value(value) for key, value in found.items() if label_value(value)}


def render(labels: Mapping[str, str]) -> str:
    return HEADER + "".join(f"{key}={labels[key]}\n" for key in sorted(labels))


def refusal(path: str) -> str:
    """Why calfwd will not write `path`, or "": what is there must be calfwd's own regular file
    (owned by this process's user, beginning with HEADER), or nothing."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return exc.strerror or str(exc)
    if not stat.S_ISREG(info.st_mode):
        return f"{textfile.file_kind(info.st_mode)} is there, not calfwd's file"
    if info.st_uid != os.geteuid():
        return f"a file of uid {info.st_uid} is there, not calfwd's"
    try:
        head = textfile.read_regular(path, limit=1 << 16)
    except OSError as exc:
        return exc.strerror or str(exc)
    if not head.startswith(HEADER.encode()):
        return "a file calfwd did not write is there"
    return ""


class LabelsFile:
    """The daemon's side: update() with the facts after every reconcile and guard judgement."""

    def __init__(self, reporter: Any, path: Callable[[], str],
                 write: Callable[[str, str], None] = textfile.write_atomic) -> None:
        self.reporter = reporter
        self._path = path
        self._write = write
        self._written: Optional[Tuple[str, str]] = None  # (path, text) as last written
        self._failed: Optional[Tuple[str, str]] = None  # (path, why) as last said

    def update(self, labels: Mapping[str, str]) -> None:
        path = self._path()
        if not path:
            return
        text = render(labels)
        if self._written == (path, text):
            return
        why = refusal(path)
        if not why:
            try:
                self._write(path, text)
            except OSError as exc:
                why = exc.strerror or str(exc)
        if why:
            if self._failed != (path, why):
                self.reporter.emit(WRITE_EVENT, f"cannot write the node labels file {path}: {why} (reconciling "
                                   "goes on; with the packaged unit, a directory other than NFD's features.d "
                                   "needs a ReadWritePaths= drop-in)", path=path)
            self._failed = (path, why)
            return
        self._written, self._failed = (path, text), None


def remove_written(path: str) -> Tuple[str, str]:
    """cleanup: (what was removed, or ""; why what is there was left alone, or "")."""
    removed, left = textfile.remove_own(path, HEADER.encode(), "calfwd's node labels", "labels")
    return (f"node labels file {path}" if removed else ""), left
