"""A long-lived connection prober: RATE new TCP connections per second, each a real one.

Run inside a lab namespace with the distro python:

    prober.py DST_IP PORT RATE TIMEOUT MAX_SECONDS

Every 1/RATE seconds it starts a new non-blocking connect to DST_IP:PORT, whatever the ones
before it are doing (a dropped SYN must not slow the schedule down). An attempt succeeds when
the connection is set up and one byte sent comes back (the lab's echo servers) within TIMEOUT
seconds; otherwise it fails (refused, rejected, reset, or timed out). Sockets close with RST
(SO_LINGER 0) so the prober leaves no TIME_WAIT behind.

It prints "ready" once running. It stops starting new attempts when its stdin reaches EOF (or
after MAX_SECONDS, a hard bound), waits for the ones in flight, then prints one JSON line:
{"start": t0, "rate": r, "timeout": s, "attempts": [[t, ok, ms, reason], ...]} with t on
CLOCK_MONOTONIC (system-wide: the harness compares it with its own event times).
"""

import errno
import json
import os
import selectors
import socket
import struct
import sys
import time


def main() -> None:
    dst, port, rate, timeout, max_seconds = (sys.argv[1], int(sys.argv[2]), float(sys.argv[3]),
                                             float(sys.argv[4]), float(sys.argv[5]))
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, None)
    interval = 1.0 / rate
    inflight = {}  # socket -> [t_start, stage]
    attempts = []
    start = time.monotonic()
    next_at = start
    stopping = False
    linger = struct.pack("ii", 1, 0)

    def finish(sock, ok, reason):
        t0 = inflight.pop(sock)[0]
        attempts.append([round(t0, 6), 1 if ok else 0, round((time.monotonic() - t0) * 1000, 2), reason])
        try:
            sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def launch(now):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        inflight[sock] = [now, "connect"]
        err = sock.connect_ex((dst, port))
        if err not in (0, errno.EINPROGRESS):
            finish(sock, False, errno.errorcode.get(err, str(err)))
            return
        sel.register(sock, selectors.EVENT_WRITE, "sock")

    print("ready", flush=True)
    while True:
        now = time.monotonic()
        if not stopping and now - start > max_seconds:
            stopping = True
        if not stopping:
            while next_at <= now:
                launch(now)
                next_at += interval
        for sock, (t0, _stage) in list(inflight.items()):
            if now - t0 > timeout:
                finish(sock, False, "timeout")
        if stopping and not inflight:
            break
        wait = 0.02 if stopping else max(0.0, min(next_at - time.monotonic(), 0.02))
        for key, _mask in sel.select(timeout=wait):
            if key.data is None:  # stdin
                if not os.read(0, 4096):
                    stopping = True
                    sel.unregister(0)
                continue
            sock = key.fileobj
            if sock not in inflight:
                continue
            stage = inflight[sock][1]
            try:
                if stage == "connect":
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        finish(sock, False, errno.errorcode.get(err, str(err)))
                        continue
                    sock.send(b"x")
                    inflight[sock][1] = "echo"
                    sel.modify(sock, selectors.EVENT_READ, "sock")
                else:
                    data = sock.recv(1)
                    finish(sock, data == b"x", "ok" if data == b"x" else "closed")
            except OSError as exc:
                finish(sock, False, errno.errorcode.get(exc.errno, str(exc.errno)))
    print(json.dumps({"start": start, "rate": rate, "timeout": timeout, "attempts": attempts}), flush=True)


if __name__ == "__main__":
    main()
