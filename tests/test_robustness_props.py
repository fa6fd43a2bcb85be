"""Property-based robustness (issue 11): whatever a user or a local attacker puts in a
configuration value, a zone file, a certificate file or the ledger, the outcome is
success or one of our errors (one line, a documented exit code) - never another
exception, which the CLI would report as "internal error".  A failed zone edit leaves
the file byte-identical.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import dns.name
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tlsa_manager.certs import load_chain
from tlsa_manager.cli import main
from tlsa_manager.config import config_from_dict
from tlsa_manager.errors import TlsaManagerError
from tlsa_manager.ledger import decode
from tlsa_manager.provider import ChangeSet, OwnerChange
from tlsa_manager.records import Tlsa
from tlsa_manager_providers.zonefile import ZoneFileProvider

from robust_helpers import CHAIN, EXAMPLES

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OWNER = dns.name.from_text("_25._tcp.mail.example.com.")
NEW = Tlsa.from_text("3 1 1 " + "cd" * 32)

# TOML's value space: no null; floats include nan and inf.
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["3 1 1", "2 1 1", "3 0 1", "5m", "1d", "-1", "25", "127.0.0.1:53", "", "mail.example.com"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
HOST_KEYS = ["ports", "records", "ttl", "budget", "prune", "slack", "negative_ttl", "reload", "nameservers",
             "next_keys", "probe", "probe_port", "key", "staged_dir", "provider", "pin_backup_issuers",
             "unsafe_allow_fragile_kinds", "certs"]


@SETTINGS
@given(st.dictionaries(st.sampled_from(HOST_KEYS), values, max_size=3), st.text(max_size=20))
def test_any_host_setting_is_accepted_or_one_config_error(settings_: dict[str, Any], host: str) -> None:
    doc = {
        "providers": {"z": {"type": "zonefile", "zone_file": "/nonexistent/db.example.com"}},
        "hosts": {host or "mail.example.com": {"cert": str(CHAIN), **settings_}},
    }
    try:
        config = config_from_dict(doc, Path("/tmp"), "test")
    except TlsaManagerError as exc:
        assert "\n" not in exc.one_line()
        return
    for spec in config.hosts.values():  # what was accepted is usable
        assert spec.ports and len(set(spec.ports)) == len(spec.ports)
        assert math.isfinite(spec.slack) and spec.certs


@SETTINGS
@given(st.dictionaries(st.sampled_from(["providers", "hosts", "defaults", "state_dir"]), values, max_size=3))
@example({"providers": {"\n": False}})  # a name with a newline in an error message (found by this test)
def test_any_document_shape_is_accepted_or_one_config_error(doc: dict[str, Any]) -> None:
    try:
        config_from_dict(doc, Path("/tmp"), "test")
    except TlsaManagerError as exc:
        assert "\n" not in exc.one_line()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml_value, value)) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(HOST_KEYS), values)
def test_cli_never_reports_an_internal_error_for_a_config_value(key: str, value: Any) -> None:
    """The whole CLI (`plan`) on a config file with one arbitrary host value."""
    with tempfile.TemporaryDirectory() as tmp:
        zone = Path(tmp) / "db.example.com"
        zone.write_bytes((EXAMPLES / "db.example.com").read_bytes())
        config = Path(tmp) / "c.toml"
        config.write_text(
            f'state_dir = "{tmp}/state"\n[providers.z]\ntype = "zonefile"\nzone_file = "{zone}"\n'
            f'[hosts."mail.example.com"]\ncert = "{CHAIN}"\n{key} = {_toml_value(value)}\n'
        )
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["--config", str(config), "plan"])
        assert "internal error" not in err.getvalue() and "Traceback" not in err.getvalue(), err.getvalue()
        assert code in (0, 1, 2, 3, 4)
        if code not in (0, 4):
            assert err.getvalue().count("tlsa-manager: error:") == 1, err.getvalue()


zone_words = st.sampled_from([
    "@", "mail", "_25._tcp.mail", "$ORIGIN", "$TTL", "$INCLUDE", "IN", "CH", "TLSA", "A", "TXT", "SOA", "(", ")",
    ";", '"', "\\", "3", "1", "300", "1h", "192.0.2.1", "example.com.", "a\\065", "\\(", "\t", "  ", "é", "\udcff",
    "ab" * 32,
])
zone_lines = st.lists(st.lists(zone_words, max_size=8).map(" ".join), max_size=6)


@SETTINGS
@given(zone_lines)
def test_any_zone_text_is_read_and_edited_or_one_error(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        zone = Path(tmp) / "db.example.com"
        data = (EXAMPLES / "db.example.com").read_bytes() + "\n".join(extra).encode("utf-8", "surrogateescape")
        zone.write_bytes(data)
        provider = ZoneFileProvider({"zone_file": str(zone), "zone": "example.com", "check": False})
        try:
            current = provider.read([OWNER])[OWNER].records
            change = OwnerChange(OWNER, current, frozenset({NEW}), frozenset(), 300, 300)
            provider.apply(ChangeSet((change,)))
        except TlsaManagerError as exc:
            assert "\n" not in exc.one_line()
            assert zone.read_bytes() == data  # nothing half-written
            return
        after = zone.read_bytes()
        for line in extra:  # every other line kept (byte for byte)
            if "TLSA" not in line and "SOA" not in line and line.strip():
                assert line.encode("utf-8", "surrogateescape") in after


pem = CHAIN.read_bytes()


@SETTINGS
@given(st.one_of(
    st.binary(max_size=300),
    st.tuples(st.integers(0, len(pem)), st.integers(0, len(pem)), st.binary(max_size=20)).map(
        lambda t: pem[: min(t[0], t[1])] + t[2] + pem[max(t[0], t[1]):]
    ),
))
def test_any_certificate_bytes_load_or_one_input_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cert.pem"
        path.write_bytes(data)
        try:
            load_chain(path)
        except TlsaManagerError as exc:
            assert exc.exit_code == 2 and "\n" not in exc.one_line()


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)


@SETTINGS
@given(json_values, json_values)
def test_any_ledger_document_loads_or_one_state_error(hosts: Any, deploys: Any) -> None:
    documents = [
        {"schema": 1, "hosts": hosts},
        {"schema": 1, "hosts": {"mail.example.com": {"owners": hosts, "deploys": deploys}}},
        {"schema": 1, "hosts": {"m": {"owners": {"_25._tcp.m.": {"managed": [], "history": hosts}}}}},
    ]
    for doc in documents:
        try:
            decode(json.dumps(doc))
        except TlsaManagerError as exc:
            assert "\n" not in exc.one_line()


owner_texts = st.sampled_from(["_25._tcp.mail", "_25._tcp.mail.example.com.", "@", "mail", "_465._tcp.mail", "www"])
record_texts = st.sampled_from(["3 1 1 " + "aa" * 32, "2 1 1 " + "bb" * 32, "3 1 2 " + "cc" * 64, "3 0 1 " + "dd" * 32])


@st.composite
def zone_bodies(draw: st.DrawFn) -> str:
    """Valid zone text in the shapes people write: implicit owners, TTLs or not, classes
    or not, parentheses, $TTL changes, a $ORIGIN change and back."""
    out: list[str] = []
    for _ in range(draw(st.integers(1, 8))):
        explicit = draw(st.booleans()) or not out
        owner = draw(owner_texts) if explicit else ""
        ttl = draw(st.sampled_from(["", "300 ", "1h ", "60 "]))
        cls = draw(st.sampled_from(["", "IN "]))
        kind = draw(st.sampled_from(["TLSA", "TLSA", "A", "TXT", "directive"]))
        lead = owner if explicit else draw(st.sampled_from([" ", "\t", "    "]))
        if kind == "TLSA":
            record = draw(record_texts)
            if draw(st.booleans()):
                usage, rest = record.split(" ", 1)
                record = f"( {usage}\n        {rest} )"
            out.append(f"{lead} {ttl}{cls}TLSA {record}\n")
        elif kind == "A":
            out.append(f"{lead} {ttl}{cls}A 192.0.2.7 ; an A record\n")
        elif kind == "TXT":
            out.append(f'{lead} {ttl}{cls}TXT "TLSA ; ( not a record" \n')
        else:
            out.append(draw(st.sampled_from(["$TTL 120\n", "$ORIGIN sub.example.com.\n$ORIGIN example.com.\n",
                                             "; a comment line\n", "\n"])))
    return "".join(out)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone_bodies())
def test_the_fast_scan_reads_what_dnspython_reads(body: str) -> None:
    """The one-pass scanner (item 9) against dnspython's full parse as the oracle of the
    records, and named (named-compilezone) as the oracle of the TTL: an RRset whose lines
    give several TTLs is loaded by named with the first of a run of lines of one owner,
    while dnspython keeps the lowest."""
    import dns.rdatatype
    import dns.zone
    from test_zonefile_generic import named_tlsa

    from servers import require

    require("named-compilezone")

    head = "$ORIGIN example.com.\n$TTL 3600\n@ IN SOA ns1 hm ( 1 7200 3600 1209600 300 )\n  IN NS ns1\nns1 IN A 192.0.2.1\n"
    owners = [dns.name.from_text(n) for n in ("_25._tcp.mail.example.com.", "_465._tcp.mail.example.com.",
                                               "example.com.", "mail.example.com.")]
    with tempfile.TemporaryDirectory() as tmp:
        zone = Path(tmp) / "db.example.com"
        zone.write_text(head + body)
        oracle = dns.zone.from_text(head + body, origin="example.com.", relativize=False)
        got = ZoneFileProvider({"zone_file": str(zone), "zone": "example.com"}).read(owners)
        for owner in owners:
            rdataset = oracle.get_rdataset(owner, dns.rdatatype.TLSA)
            expected = frozenset(Tlsa.from_rdata(r) for r in rdataset) if rdataset else frozenset()
            assert got[owner].records == expected, (owner, body)
            if rdataset:  # -k ignore: a TLSA owner that also has an A record is fine here
                assert got[owner].ttl == named_tlsa(zone, "-k", "ignore")[owner][1], (owner, body)
