"""Test doubles shared by the unit tests: one per driver, one loop and clock."""
