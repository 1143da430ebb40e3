"""Whether root may trust a file: nobody but root can change it or put another in its place.

calfwd runs as root and changes the host firewall, so whoever can write its config file, or
the on_calico_flush program it runs, or any directory on the way to either (they rename
another file into place), has root. The config and the program are judged by the same rules
here. The one difference: a config may sit in a sticky directory like /tmp (others cannot
replace root's file there), a program may not (nothing a root daemon executes belongs in a
directory everyone writes to).
"""

from __future__ import annotations

import os
import stat
from typing import Iterable, List, Tuple

MAX_LINKS = 40  # the kernel's own limit on symbolic links followed in one lookup


def owner_and_mode(path: str, info: os.stat_result) -> List[str]:
    problems = []
    if info.st_uid != 0:
        problems.append(f"{path}: owned by uid {info.st_uid}, must be owned by root")
    if info.st_mode & 0o022:
        problems.append(f"{path}: mode {info.st_mode & 0o777:04o} lets group or others write it "
                        "(run: chmod go-w)")
    return problems


def directory_problem(path: str, directories: Iterable[str], sticky_ok: bool, advice: str) -> List[str]:
    """The first of `directories` that someone other than root could write to, as one line."""
    for directory in directories:
        try:
            info = os.stat(directory)
        except OSError as exc:
            return [f"{path}: cannot check its directory {directory}: {exc.strerror or exc}"]
        sticky = sticky_ok and bool(info.st_mode & stat.S_ISVTX)
        if info.st_uid != 0 or (info.st_mode & 0o022 and not sticky):
            return [f"{path}: its directory {directory} can be written by someone other than root "
                    f"(owner uid {info.st_uid}, mode {info.st_mode & 0o7777:04o}), who could "
                    f"replace the file: {advice}"]
    return []


def ancestors(path: str) -> List[str]:
    """The directories above an absolute path, nearest first, / last."""
    found = []
    directory = os.path.dirname(path)
    while True:
        found.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            return found
        directory = parent


def program_problems(path: str) -> List[str]:
    """Why root must not execute `path`, or nothing: an absolute path to a regular executable
    file owned by root and written by nobody else, in directories only root can write to.

    Symbolic links are followed (/bin/sh is one on most systems), and every directory in
    which a name is looked up on the way counts: a link in another user's directory could be
    pointed elsewhere. The check and the exec see the same file, since only root can change
    any of it in between.
    """
    if not path.startswith("/"):
        return [f"{path}: not an absolute path"]
    try:
        real, looked_in = _resolve(path)
        info = os.lstat(real)
    except OSError as exc:
        return [f"{path}: {exc.strerror or exc}"]
    except ValueError as exc:
        return [f"{path}: {exc}"]
    shown = path if real == path else f"{path} (= {real})"
    if not stat.S_ISREG(info.st_mode):
        return [f"{shown}: not a regular file"]
    problems = owner_and_mode(shown, info)
    if not info.st_mode & 0o111:
        problems.append(f"{shown}: not executable (mode {info.st_mode & 0o777:04o})")
    directories = list(dict.fromkeys(looked_in + ancestors(real)))
    problems += directory_problem(shown, directories, sticky_ok=False,
                                  advice="keep the program in a directory only root can write to")
    return problems


def _resolve(path: str) -> Tuple[str, List[str]]:
    """The path without symbolic links, and every directory a name was looked up in."""
    pending = [part for part in reversed(path.split("/")) if part]
    current, looked_in, links = "/", [], 0
    while pending:
        name = pending.pop()
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        looked_in.append(current)
        candidate = os.path.join(current, name)
        info = os.lstat(candidate)
        if stat.S_ISLNK(info.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise ValueError(f"more than {MAX_LINKS} symbolic links (a loop?)")
            target = os.readlink(candidate)
            pending.extend(part for part in reversed(target.split("/")) if part)
            if target.startswith("/"):
                current = "/"
            continue
        if pending and not stat.S_ISDIR(info.st_mode):
            raise ValueError(f"{candidate} is not a directory")
        current = candidate
    return current, looked_in
