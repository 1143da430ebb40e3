"""Timestamps of firewalld's bus events, as a second client sees them (run in the node namespace).

Prints one JSON line per event, times on CLOCK_MONOTONIC (system-wide):
  {"kind": "ready"}                                   subscribed
  {"kind": "reloaded", "t": ..., "sender": ":1.5"}    firewalld's Reloaded (any sender; the
                                                      harness keeps the owner's)
  {"kind": "owner", "t": ..., "new": ":1.7"}          NameOwnerChanged for firewalld's name
  {"kind": "state", "t": ..., "state": "RUNNING"}     the new owner's first answer to
                                                      Get(state): firewalld answers only once
                                                      its start-up is done, so this is the
                                                      moment it reached RUNNING (or FAILED)
Stops at stdin EOF, or after argv[1] seconds.
"""

import json
import sys
import time

import dbus
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

FW = "org.fedoraproject.FirewallD1"
PATH = "/org/fedoraproject/FirewallD1"


def out(kind, **fields):
    print(json.dumps(dict(kind=kind, t=time.monotonic(), **fields)), flush=True)


def main():
    DBusGMainLoop(set_as_default=True)
    bus = dbus.SystemBus()
    loop = GLib.MainLoop()

    def on_reloaded(*_args, sender=None):
        out("reloaded", sender=str(sender))

    def on_owner(name, old, new):
        out("owner", old=str(old), new=str(new))
        if not new:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                state = str(bus.call_blocking(FW, PATH, "org.freedesktop.DBus.Properties", "Get", "ss",
                                              (FW, "state"), timeout=30))
            except dbus.exceptions.DBusException:
                state = ""
            if state in ("RUNNING", "FAILED"):
                out("state", state=state, owner=str(new))
                return
            time.sleep(0.005)

    bus.add_signal_receiver(on_reloaded, signal_name="Reloaded", dbus_interface=FW, path=PATH,
                            sender_keyword="sender")
    bus.add_signal_receiver(on_owner, signal_name="NameOwnerChanged", dbus_interface="org.freedesktop.DBus",
                            bus_name="org.freedesktop.DBus", path="/org/freedesktop/DBus", arg0=FW)

    def on_stdin(_fd, _cond):
        loop.quit()
        return False

    GLib.io_add_watch(0, GLib.IO_IN | GLib.IO_HUP, on_stdin)
    GLib.timeout_add(int(float(sys.argv[1]) * 1000), loop.quit)
    bus.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId", "", ())
    out("ready")
    loop.run()


if __name__ == "__main__":
    main()
