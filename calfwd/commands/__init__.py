"""calfwd's verbs, one module each (`calfwd/cli.py` parses the command line and dispatches):
each module's run(args) -> int is the command; common.py holds what several share."""
