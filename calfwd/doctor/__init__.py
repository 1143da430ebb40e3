"""`calfwd doctor`: read the host once (reads.py) into a snapshot (snapshot.py), judge it
(checks.py). Reading touches the system and never changes it; judging is pure."""
