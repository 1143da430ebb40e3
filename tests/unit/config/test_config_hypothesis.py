"""Hostile config input, generated: whatever the file says, calfwd answers with ConfigError only.

Three properties over config parsing and validation (calfwd/config.py):

1. Any text, any bytes, any TOML document, and any TOML value in any known key: `parse`
   and `load` return a Config or raise ConfigError, never anything else.
2. Every problem is one line, starts with the file's path, and then names where: a key path
   (`calico.ip_pools[2]: ...`, `firewalld.zone: ...`, a section) or a line (`line 3...`).
3. A valid config, generated and written out as TOML, parses back to exactly what was written.

The TOML documents are written by a small serializer below (no TOML writer is among the
distro's packages); it quotes keys, so keys and section names can be any string.

Bugs these properties found (a superscript prefix length crashing the parser, unknown names
printed raw) have regression tests at the end of this file.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from calfwd import config as cfg
from calfwd.config import schema

PATH = "/etc/calfwd/calfwd.toml"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -----------------------------------------------------------------------------------------
# A minimal TOML writer: basic strings with every escape, inline arrays and tables.


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(doc: dict) -> str:
    """Top-level scalars first, then one [section] per table (TOML's ordering rule)."""
    lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{toml_key(name)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# -----------------------------------------------------------------------------------------
# Strategies

# Strings that TOML can carry (no lone surrogates), with the nasty bits over-represented.
NASTY = st.sampled_from(["", "+", "cali+", "\n", "\x00", "\x1b[31m", "..", "/", "²", "٣", "10.0.0.0/8",
                         "fd00::/8", "fe80::1%eth0/64", "1.2.3.4/²", "::ffff:1.2.3.4/120", "ñ", "\u202e",
                         "calfwd", "trusted", "public", "permanent", "runtime", "bgp", "wireguard"])
TEXT = st.one_of(NASTY, st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
SCALARS = st.one_of(
    TEXT,
    st.booleans(),
    st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)),
    st.dates(),
    st.times(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=8,
)
KNOWN = [(section, key) for section, keys in schema.SCHEMA.items() for key in keys]


def check_problems(problems, path=PATH):
    """Every problem: one line, the file's path first, then a key path or a line number."""
    assert problems, "a ConfigError must say what is wrong"
    for problem in problems:
        assert isinstance(problem, str)
        assert "\n" not in problem and "\r" not in problem, f"problem spans lines: {problem!r}"
        # Nor any other control character: a problem goes to a terminal and to the journal.
        assert not any(unicodedata.category(ch) == "Cc" for ch in problem), f"control character: {problem!r}"
        assert problem.startswith(f"{path}: "), problem
        rest = problem[len(path) + 2:]
        names_line = re.match(r"line \d+", rest)
        names_key = re.match(r"[^:]+:", rest) and not rest.startswith(("cannot", "is a directory"))
        names_file = rest.startswith(("cannot read", "is a directory", "cannot stat"))
        assert names_line or names_key or names_file, problem


BASE = '[calico]\nip_pools = ["10.1.0.0/16"]\n'


def parse_or_config_error(text: str):
    try:
        return cfg.parse(text, PATH)
    except cfg.ConfigError as exc:
        check_problems(exc.problems)
        return None


# -----------------------------------------------------------------------------------------
# 1 + 2: nothing but ConfigError, and every problem well formed


@SETTINGS
@given(st.text(max_size=300))
@example("[calico]\nip_pools = [\"10.0.0.0/8\"]\n[\"calico\"]\n")
@example("\ufeff[calico]\n")
def test_any_text(text):
    parse_or_config_error(text)


@SETTINGS
@given(st.binary(max_size=200))
@example(b'[calico]\nip_pools = ["10.1.0.0/16"]\n# caf\xe9\n')
@example(b"\xff\xfe[\x00c\x00]\x00")
def test_any_bytes_through_load(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "calfwd.toml"
    path.write_bytes(data)
    try:
        cfg.load(str(path))
    except cfg.ConfigError as exc:
        check_problems(exc.problems, str(path))


# Keys: calfwd's own names (so that values reach the validators), plain names, any text.
KEY = st.one_of(st.sampled_from(sorted(set(schema.SCHEMA) | {k for keys in schema.SCHEMA.values() for k in keys})),
                st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True),
                TEXT)


@SETTINGS
@given(st.dictionaries(KEY, st.one_of(VALUES, st.dictionaries(KEY, VALUES, max_size=5)), max_size=5))
def test_any_toml_document(doc):
    parse_or_config_error(toml_document(doc))


@SETTINGS
@given(st.sampled_from(KNOWN), VALUES)
@example(("calico", "ip_pools"), ["fe80::1%eth0/64"])
@example(("daemon", "resync_interval"), math.nan)
@example(("daemon", "resync_interval"), 10 ** 30)
def test_any_value_in_every_known_key(where, value):
    section, key = where
    doc = {"calico": {"ip_pools": ["10.1.0.0/16"]}}
    doc.setdefault(section, {})[key] = value
    parse_or_config_error(toml_document(doc))


@SETTINGS
@given(st.dictionaries(st.sampled_from(KNOWN), VALUES, min_size=1, max_size=len(KNOWN)))
def test_any_values_in_many_known_keys_at_once(values):
    doc: dict = {}
    for (section, key), value in values.items():
        doc.setdefault(section, {})[key] = value
    parse_or_config_error(toml_document(doc))


@SETTINGS
@given(st.sampled_from(list(schema.SCHEMA)), KEY, VALUES)
def test_unknown_keys_are_named_on_one_line(section, key, value):
    assume(key not in schema.SCHEMA[section])
    doc = {"calico": {"ip_pools": ["10.1.0.0/16"]}}
    doc.setdefault(section, {})[key] = value
    with pytest.raises(cfg.ConfigError) as err:
        cfg.parse(toml_document(doc), PATH)
    check_problems(err.value.problems)
    assert any("unknown key" in p for p in err.value.problems)


@SETTINGS
@given(KEY)
def test_unknown_sections_are_named_on_one_line(name):
    assume(name not in schema.SCHEMA)
    text = toml_document({"calico": {"ip_pools": ["10.1.0.0/16"]}, name: {"x": 1}})
    with pytest.raises(cfg.ConfigError) as err:
        cfg.parse(text, PATH)
    check_problems(err.value.problems)


# -----------------------------------------------------------------------------------------
# 3: valid configs round-trip


@st.composite
def pools(draw):
    """Non-overlapping pools from the documentation ranges, v4 and/or v6, in any order."""
    n4 = draw(st.integers(0, 4))
    n6 = draw(st.integers(0 if n4 else 1, 4))
    v4 = [ipaddress.ip_network(f"198.18.{i * 16}.0/20") for i in draw(
        st.lists(st.integers(0, 15), min_size=n4, max_size=n4, unique=True))]
    v6 = [ipaddress.ip_network(f"2001:db8:{i:x}::/48") for i in draw(
        st.lists(st.integers(0, 0xffff), min_size=n6, max_size=n6, unique=True))]
    return draw(st.permutations(v4 + v6))


# Any name but the host's own schemes (eth0, e+, lo...), which are refused by design
# (tests/unit/test_config.py has those).
INTERFACE = st.from_regex(r"[a-z][a-z0-9._-]{0,13}\+?", fullmatch=True).filter(
    lambda s: s.rstrip("+") not in (".", "..") and schema.host_interface_scheme(s) is None)
NAME = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,16}", fullmatch=True)
OWNED = NAME.filter(lambda s: not s.startswith(("cali", "felix", "firewalld", "kube")))


@st.composite
def valid_configs(draw):
    """(TOML text, what each setting must come back as)."""
    pool_list = draw(pools())
    calico: dict = {"ip_pools": [p.with_prefixlen for p in pool_list]}
    want: dict = {"ip_pools": tuple(pool_list)}
    nat = draw(st.one_of(st.none(), st.booleans(), st.lists(st.sampled_from(pool_list), unique=True)))
    if nat is not None:
        calico["nat_outgoing"] = nat if isinstance(nat, bool) else [p.with_prefixlen for p in nat]
    want["nat_outgoing"] = tuple(pool_list) if nat is True else () if not nat else tuple(nat)
    if draw(st.booleans()):
        ifaces = draw(st.lists(INTERFACE, min_size=1, max_size=6, unique=True))
        calico["interfaces"], want["interfaces"] = ifaces, tuple(ifaces)
    else:
        want["interfaces"] = schema.DEFAULT_INTERFACES
    if draw(st.booleans()):
        ports = draw(st.lists(st.sampled_from(schema.HOST_PORT_NAMES), unique=True))
        calico["host_ports"], want["host_ports"] = ports, tuple(ports)
    else:
        want["host_ports"] = schema.DEFAULT_HOST_PORTS
    doc: dict = {"calico": calico}

    fw = {"enabled": draw(st.booleans()), "mode": draw(st.sampled_from(schema.MODES)), "zone": draw(NAME),
          "host_zone": draw(st.one_of(st.just(""), NAME)), "forward_policy": draw(OWNED),
          "host_policy": draw(OWNED), "trust_pool_sources": draw(st.booleans())}
    assume(fw["forward_policy"] != fw["host_policy"])
    given_fw = {k: v for k, v in fw.items() if draw(st.booleans())}
    if given_fw:
        doc["firewalld"] = given_fw
    defaults = {k: default for k, (_check, default) in schema.SCHEMA["firewalld"].items()}
    assume(dict(defaults, **given_fw)["forward_policy"] != dict(defaults, **given_fw)["host_policy"])
    want["firewalld"] = cfg.FirewalldSettings(**dict(defaults, **given_fw))

    table = draw(st.one_of(st.none(), OWNED))
    if table is not None:
        doc["nftables"] = {"table": table}
    want["nft_table"] = table or "calfwd"
    interval = draw(st.one_of(st.none(), st.integers(1, 86400), st.floats(1, 86400)))
    if interval is not None:
        doc["daemon"] = {"resync_interval": interval}
    want["resync_interval"] = float(interval if interval is not None else 60)
    return toml_document(doc), want


@SETTINGS
@given(valid_configs())
def test_valid_configs_round_trip(case):
    text, want = case
    got = cfg.parse(text, PATH)
    assert got.path == PATH
    for key, value in want.items():
        assert getattr(got, key) == value, (key, text)


def refused(text: str):
    """The problems if the config is refused, [] if accepted; any other exception propagates."""
    try:
        cfg.parse(text, PATH)
    except cfg.ConfigError as exc:
        return exc.problems
    return []


# -----------------------------------------------------------------------------------------
# Regression tests for bugs the properties above found (fixed in config/__init__.py).


@pytest.mark.parametrize("key", ["ip_pools", "nat_outgoing"])
def test_regression_superscript_prefix_is_a_config_error(key):
    text = '[calico]\nip_pools = ["1.2.3.0/24"]\n'
    if key == "nat_outgoing":
        text += 'nat_outgoing = ["1.2.3.0/\u00b2"]\n'
    else:
        text = '[calico]\nip_pools = ["1.2.3.4/\u00b2"]\n'
    with pytest.raises(cfg.ConfigError) as err:
        cfg.parse(text, PATH)
    check_problems(err.value.problems)
    assert any(f"calico.{key}[0]" in p for p in err.value.problems)


def test_regression_non_ascii_prefix_is_refused():
    assert refused('[calico]\nip_pools = ["10.0.0.0/\u0668"]\n'), "accepted as 10.0.0.0/8"


def test_regression_scoped_ipv6_pool_is_refused():
    problems = refused('[calico]\nip_pools = ["fe80::%eth0/64"]\n')
    assert problems, "a scoped address was accepted as a pool"
    check_problems(problems)


@pytest.mark.parametrize("text", [
    BASE + '"a\\nb" = 1\n',
    BASE + '"\\u001b[2J" = 1\n',
    BASE + '["x\\ry"]\n',
    BASE + '[""]\n',
    BASE + '"\\u0085" = 2\n',
])
def test_regression_unknown_names_are_printed_safely(text):
    problems = refused(text)
    assert problems
    check_problems(problems)
    assert not any(p.startswith(f"{PATH}: : ") for p in problems)
