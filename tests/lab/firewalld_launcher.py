"""Runs a firewalld program (firewalld, firewall-cmd) from an extracted package tree.

    /usr/bin/python3 firewalld_launcher.py TREE PROGRAM [ARG]...

The host's python3 and its bindings (dbus, gi, nftables) run the tree's `firewall`
package, which comes first on sys.path; firewalld's stock zones, services, icmptypes and
policies come from the tree's usr/lib/firewalld instead of the host's. Nothing in the tree
is installed anywhere.

Standalone script: it imports nothing from the lab (whose dbus.py would shadow dbus-python
if this directory stayed on sys.path).
"""

import collections
import collections.abc
import importlib
import os
import runpy
import shlex
import sys
import types


def main() -> None:
    tree, program = sys.argv[1], sys.argv[2]
    sys.path[0] = os.path.join(tree, "usr", "lib", "python3", "dist-packages")
    # python3-slip (firewalld 0.9's D-Bus helper) still uses an alias Python 3.10 removed.
    if not hasattr(collections, "Callable"):
        collections.Callable = collections.abc.Callable
    # firewalld <= 1.3 imports `pipes` (gone in Python 3.13) for pipes.quote alone.
    try:
        importlib.import_module("pipes")
    except ImportError:
        sys.modules["pipes"] = types.SimpleNamespace(quote=shlex.quote)
    from firewall import config
    # Before any other firewall module reads the paths. firewalld's own --default-config
    # would do the same, for the daemon only.
    config.set_default_config_paths(os.path.join(tree, "usr", "lib", "firewalld"))
    sys.argv = [program] + sys.argv[3:]
    runpy.run_path(program, run_name="__main__")


if __name__ == "__main__":
    main()
