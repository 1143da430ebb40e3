"""`calfwd doctor`: inspect the host (doctor/reads.py), one finding per line (doctor/checks.py)."""

from __future__ import annotations

import argparse
import json

from calfwd.doctor import checks as doctor
from calfwd.doctor import reads as host


def run(args: argparse.Namespace) -> int:
    snapshot = host.read_snapshot(args.config, fw_dir=args.firewalld_dir, dropin=args.dropin)
    report = doctor.diagnose(snapshot)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            print(line)
    return report.exit_code
