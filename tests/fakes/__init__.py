"""Test doubles shared by the unit tests: one per driver (firewalld.py, nft.py), one virtual
loop and clock (loop.py), the daemon's Reconciler (reconciler.py) and doctor's host snapshots
(host.py). Tests import them from here, never from another test module."""
