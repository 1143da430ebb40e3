"""The watch wing: the kernel's nftables changes and firewalld's flushes, on the daemon's loop.

The daemon uses it only through interface.Watch; KernelWatch is the one implementation."""

from calfwd.watch.interface import Repair, RepairedLayer, Watch
from calfwd.watch.kernel import KernelWatch

__all__ = ["KernelWatch", "Repair", "RepairedLayer", "Watch"]
