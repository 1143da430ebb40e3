"""What the audit reads beside the plan `calfwd status` makes: firewalld's backend, the
default zone's target, firewalld's own check of its permanent configuration, calfwd's table
as nft prints it, and whether calfwd's flush guard is installed. Read-only; a read that
fails is named in Observed.unreadable and never ends the audit."""

from __future__ import annotations

import datetime
import socket
from typing import Any, Callable, List, Mapping, Optional

from calfwd import __version__
from calfwd.judge import guard
from calfwd.audit.build import Observed, settings
from calfwd.config import Config
from calfwd.desired import HostFacts
from calfwd.drivers.dropin import read_dropin


def observe(config: Config, facts: HostFacts, nft: Any, firewalld: Any, table_present: bool,
            dropin: Optional[str] = None, now: Optional[datetime.datetime] = None,
            read_conf: Optional[Callable[[], Mapping[str, str]]] = None) -> Observed:
    """table_present: the plan's read found calfwd's table (listed again here as text).
    read_conf: firewalld.conf as KEY -> value (doctor/reads.read_firewalld_conf)."""
    unreadable: List[str] = []
    when = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {}
    if firewalld is not None and facts.firewalld_running:
        for key, read in (("backend", lambda: firewalld.info().backend),
                          ("default_zone_target", lambda: str(firewalld.zone_runtime(facts.default_zone)
                                                              .get("target") or ""))):
            try:
                fields[key] = read()
            except Exception as exc:
                unreadable.append(f"firewalld: {exc}")
        if read_conf is not None:
            try:
                fields["firewalld_settings"] = settings(read_conf(), facts.firewalld_version)
            except OSError as exc:
                unreadable.append(f"firewalld.conf: {exc.strerror or exc}")
        try:
            problem = firewalld.check_permanent_config()
            fields.update(check="failed" if problem else "ok", check_output=problem)
        except Exception as exc:
            unreadable.append(f"firewalld: {exc}")
            fields.update(check="not run", check_output=f"could not ask firewalld: {exc}")
    elif config.firewalld.enabled:
        fields.update(check_output="firewalld is not running")
    else:
        fields.update(check_output="calfwd does not manage firewalld here")
    try:
        fields["nft_text"] = nft.table_text("inet", config.nft_table) if table_present else ""
    except Exception as exc:
        unreadable.append(f"nftables: {exc}")
    path = guard.dropin_path(dropin)
    try:
        fields["guard_dropin"] = path if guard.is_ours(read_dropin(path)) else ""
    except OSError as exc:
        unreadable.append(f"flush guard: {path}: {exc.strerror or exc}")
    return Observed(hostname=socket.gethostname(), date=when, version=__version__,
                    unreadable=tuple(unreadable), **fields)
