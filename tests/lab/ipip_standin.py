"""IP-in-IP for kernels without the ipip module: a TUN device named tunl0 and this loop.

    /usr/bin/python3 ipip_standin.py TUN CIDR=REMOTE [CIDR=REMOTE ...]

It attaches to the persistent TUN device TUN (created by `ip tuntap add`), prints "ready",
then, until killed:

- a packet the kernel routes into TUN (an inner IPv4 packet) goes to the REMOTE node whose
  CIDR holds its destination, over a raw IPPROTO_IPIP socket: the kernel writes the outer
  header (protocol 4, source from its own routing), so the underlay carries real IP-in-IP
  packets that conntrack, Felix's rules and firewalld see exactly as they see tunl0's;
- a protocol-4 packet the host accepts is read from that raw socket *after* netfilter's INPUT
  hook (so only when firewalld let it in), stripped of its outer header and written into TUN,
  which the kernel then receives on "tunl0" as if the tunnel had decapsulated it.

Only the standard library: it runs with the distro python in the node's namespace.
"""

import fcntl
import ipaddress
import os
import select
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def main(argv):
    name, routes = argv[0], []
    for arg in argv[1:]:
        cidr, remote = arg.split("=")
        routes.append((ipaddress.ip_network(cidr), remote))
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([tun, raw], [], [])
        if tun in readable:
            inner = os.read(tun, 65535)
            if inner and inner[0] >> 4 == 4:
                dst = ipaddress.IPv4Address(inner[16:20])
                for net, remote in routes:
                    if dst in net:
                        try:
                            raw.sendto(inner, (remote, 0))
                        except OSError:  # rejected locally or unreachable: a lost packet
                            pass
                        break
        if raw in readable:
            outer = raw.recv(65535)
            header = (outer[0] & 0x0F) * 4
            if len(outer) > header:
                os.write(tun, outer[header:])


if __name__ == "__main__":
    main(sys.argv[1:])
