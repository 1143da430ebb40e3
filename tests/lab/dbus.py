"""A private system-like D-Bus inside the node namespace.

The bus listens on an abstract socket; abstract sockets belong to the network
namespace, so only processes inside the node namespace can reach it, and the host's
real system bus is never involved. Give every client DBUS_SYSTEM_BUS_ADDRESS=address.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

from .netns import Netns, end_process

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <!-- Required even when the address option overrides it. -->
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
  <!-- Root-run daemons may own any name: org.fedoraproject.FirewallD1(.config), calfwd's. -->
  <policy user="root">
    <allow own="*"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    """dbus-daemon on unix:abstract=/calfwd-test/<name>; restartable on the same address."""

    def __init__(self, netns: Netns, workdir: Path, name: str):
        self.netns = netns
        self.address = "unix:abstract=/calfwd-test/%s" % name
        self.config_path = Path(workdir) / "bus.conf"
        self.log_path = Path(workdir) / "bus.log"
        self._ready_path = Path(workdir) / "bus.address"
        self.config_path.write_text(BUS_CONFIG.format(address=self.address))
        self.proc: Optional[subprocess.Popen] = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        self._ready_path.write_text("")
        with open(self._ready_path, "w") as ready, open(self.log_path, "a") as log:
            self.proc = self.netns.popen(
                "dbus-daemon", "--config-file=%s" % self.config_path, "--nofork", "--nopidfile",
                "--address=%s" % self.address, "--print-address", stdout=ready, stderr=log)
        # dbus-daemon prints its address only once it is listening.
        deadline = time.monotonic() + timeout
        while not self._ready_path.read_text().strip():
            if self.proc.poll() is not None:
                raise RuntimeError("dbus-daemon exited with %s: %s"
                                   % (self.proc.returncode, self.log_path.read_text()))
            if time.monotonic() > deadline:
                raise TimeoutError("dbus-daemon not listening after %ss" % timeout)
            time.sleep(0.01)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        end_process(self.proc, sig, timeout)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        """Bus down and up again on the same address; every client connection is dropped."""
        self.stop()
        self.start()
