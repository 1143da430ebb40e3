"""TCP echo listeners and connection probes, run with the distro python inside a namespace."""

from __future__ import annotations

import select
import subprocess
import time

from .netns import Netns

PYTHON = "/usr/bin/python3"

# Dual-stack echo server; prints "ready" once listening.
ECHO_SERVER = r"""
import socket, sys, threading
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
srv.bind(("::", int(sys.argv[1])))
srv.listen(128)
print("ready", flush=True)

def echo(conn):
    with conn:
        conn.settimeout(10)
        try:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)
        except OSError:
            pass

while True:
    conn, _ = srv.accept()
    threading.Thread(target=echo, args=(conn,), daemon=True).start()
"""

# Exit 0 only if a new connection is set up and one byte comes back.
CONNECT = r"""
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(b"x")
        sys.exit(0 if conn.recv(1) == b"x" else 1)
except OSError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
"""


def start_echo_server(netns: Netns, port: int, timeout: float = 10.0) -> subprocess.Popen:
    """Start an echo server in `netns` and return once it is listening."""
    proc = netns.popen(PYTHON, "-c", ECHO_SERVER, str(port), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if line.strip() == "ready":
                return proc
            raise RuntimeError("echo server on port %d failed: %s%s"
                               % (port, line, proc.stderr.read()))
    raise TimeoutError("echo server on port %d not listening after %ss" % (port, timeout))


ATTEMPT = 0.3  # seconds: one connection attempt inside eventually()


def eventually(check, within: float) -> bool:
    """True once check() passes; attempts start until `within` seconds have gone by."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def connect(netns: Netns, dst_ip: str, port: int, timeout: float = 1.0) -> bool:
    """True if a new TCP connection from `netns` to dst_ip:port works and a byte round-trips."""
    proc = netns.run(PYTHON, "-c", CONNECT, dst_ip, str(port), str(timeout),
                     check=False, timeout=timeout * 2 + 10)
    return proc.returncode == 0


# Dual-stack UDP listener; prints "ready" once bound, then each datagram's text on a line.
UDP_LISTENER = r"""
import socket, sys
srv = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
srv.bind(("::", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, _ = srv.recvfrom(2048)
    print(data.decode(errors="replace"), flush=True)
"""

UDP_SEND = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family, socket.SOCK_DGRAM) as s:
    s.sendto(sys.argv[3].encode(), (host, port))
"""


def start_udp_listener(netns: Netns, port: int, timeout: float = 10.0) -> subprocess.Popen:
    """A UDP listener in `netns` on `port` (both families); returns once it is bound."""
    proc = netns.popen(PYTHON, "-c", UDP_LISTENER, str(port), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        raise RuntimeError("UDP listener on port %d failed: %s%s" % (port, line, proc.stderr.read() if ready else ""))
    return proc


def udp_arrives(src: Netns, listener: subprocess.Popen, dst_ip: str, port: int, within: float = 1.0) -> bool:
    """True once a datagram sent from `src` to dst_ip:port is printed by `listener`
    (start_udp_listener); a datagram is sent again every ATTEMPT seconds until `within`."""
    deadline = time.monotonic() + within
    token = "calfwd-probe-%d" % port
    while True:
        src.run(PYTHON, "-c", UDP_SEND, dst_ip, str(port), token, timeout=10)
        ready, _, _ = select.select([listener.stdout], [], [], ATTEMPT)
        if ready and listener.stdout.readline().strip() == token:
            return True
        if time.monotonic() > deadline:
            return False
