"""Running the host's read-only tools (ip, ipset, iptables-save): one way, for every reader.

An argument list, never a shell; the system's PATH (not the caller's); C locale, so that the
output parses the same everywhere; a timeout. A failure is one RuntimeError line naming the
command, which the readers turn into "could not read" findings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import List, Optional

TIMEOUT = 10.0
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def which(tool: str) -> Optional[str]:
    return shutil.which(tool, path=SYSTEM_PATH)


def run(argv: List[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False,
                              env=dict(os.environ, PATH=SYSTEM_PATH, LC_ALL="C"))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{' '.join(argv)}: {exc}") from None
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip() or f"exit {proc.returncode}"
        raise RuntimeError(f"{' '.join(argv)}: {why}")
    return proc.stdout
