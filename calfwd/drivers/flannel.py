"""Reading flannel's subnet file (ip_pools = "auto" on Canal and flannel nodes).

Read only, bounded and non-blocking (drivers/textfile.read_regular): the file is flannel's (or
k3s's), written atomically by rename, about 150 bytes. Anything else at the path (a FIFO, a
device, a directory, a huge file) is an error in one line, never a wait; judge/flannel.py
decides what an error means (the pools known before are kept). flannel's masquerade rules are
read through the nft driver's read_chains, like Felix's chains.
"""

from __future__ import annotations

from typing import Optional

from calfwd.drivers.textfile import read_regular
from calfwd.judge.flannel import MAX_FILE_BYTES


def read_subnet_file(path: str) -> Optional[str]:
    """The file's text; None when nothing is at the path (the normal case on RKE2's Canal)."""
    try:
        data = read_regular(path, follow=True, limit=MAX_FILE_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OSError(exc.strerror or str(exc)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OSError("not text (not UTF-8)") from None
