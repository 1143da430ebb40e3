"""Reading flannel's subnet file (ip_pools = "auto" on Canal and flannel nodes).

Read only, bounded and non-blocking: the file is flannel's (or k3s's), written atomically by
rename, about 150 bytes. Anything else at the path (a FIFO, a device, a directory, a huge file)
is an error in one line, never a wait; judge/flannel.py decides what an error means (the pools
known before are kept). flannel's masquerade rules are read through the nft driver's
read_chains, like Felix's chains.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

from calfwd.judge.flannel import MAX_FILE_BYTES


def read_subnet_file(path: str) -> Optional[str]:
    """The file's text; None when nothing is at the path (the normal case on RKE2's Canal)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OSError(f"cannot open: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file")
        data = os.read(fd, MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(f"larger than {MAX_FILE_BYTES} bytes: not flannel's subnet file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError("not text (not UTF-8)") from None
