"""PowerDNS beyond the contract, against the real pdns_server: signatures, two writers,
errors, zone and NS discovery, and a sync + new-key rollover through the CLI."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.name
import pytest

from tlsa_manager.dnsview import DnsView
from tlsa_manager.endpoints import parse_endpoint
from tlsa_manager.errors import ConfigError, ProviderConflict, ProviderError
from tlsa_manager.provider import ChangeSet, OwnerChange
from tlsa_manager.records import Tlsa
from tlsa_manager.testing import record
from tlsa_manager_providers.powerdns import PowerDnsProvider, other_edits

from conftest import CliRunner, bind_read
from servers import ZONE, PowerDns, free_port

if TYPE_CHECKING:
    import requests


def provider_for(powerdns: PowerDns, **settings: Any) -> PowerDnsProvider:
    return PowerDnsProvider({"api_url": powerdns.api_url, "api_key_file": str(powerdns.key_file), **settings})


def fresh_owner() -> dns.name.Name:
    return dns.name.from_text(f"_25._tcp.mx-{secrets.token_hex(4)}.{ZONE}.")


def add(owner: dns.name.Name, *records: Tlsa, expected: frozenset[Tlsa] = frozenset()) -> ChangeSet:
    return ChangeSet((OwnerChange(owner, expected, frozenset(records), ttl=300, expected_ttl=300),))


def api_replace(powerdns: PowerDns, owner: dns.name.Name, *texts: str) -> None:
    powerdns.api("PATCH", f"/zones/{ZONE}.", {"rrsets": [{
        "name": owner.to_text(), "type": "TLSA", "ttl": 300, "changetype": "REPLACE",
        "records": [{"content": t, "disabled": False} for t in texts]}]})


def test_written_records_are_served_signed(powerdns: PowerDns) -> None:
    owner = fresh_owner()
    provider_for(powerdns).apply(add(owner, record(1), record(2, "2 1 1")))
    view = DnsView([parse_endpoint(powerdns.endpoint)]).view(parse_endpoint(powerdns.endpoint), owner)
    assert view.error is None, view.error  # RRSIG present and valid against the zone's DNSKEY
    assert view.records == frozenset({record(1), record(2, "2 1 1")}) and view.ttl == 300


def test_one_owner_is_one_filtered_get_and_a_write_is_get_patch_get(powerdns: PowerDns) -> None:
    provider = provider_for(powerdns, zone=ZONE)
    owner = fresh_owner()
    provider.read([owner])
    assert provider.requests == 1
    provider.apply(add(owner, record(1)))
    assert provider.requests == 1 + 3 and provider.writes == 1


def test_someone_writes_between_our_patch_and_our_read_back(powerdns: PowerDns) -> None:
    """A second writer at the worst moment (right after our PATCH) is a conflict, not a success."""
    provider = provider_for(powerdns)
    owner = fresh_owner()
    provider.apply(add(owner, record(1)))

    def after_patch(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if response.request.method == "PATCH":
            api_replace(powerdns, owner, record(9).to_text())
        return response

    provider._http().hooks["response"].append(after_patch)
    with pytest.raises(ProviderConflict, match="changed while it was written"):
        provider.apply(add(owner, record(2), expected=frozenset({record(1)})))
    assert bind_read(powerdns.port, owner)[0] == {record(9)}


def test_someone_writes_between_our_read_and_our_patch(powerdns: PowerDns) -> None:
    """The API has no precondition: an edit between our read and our PATCH is found by the
    zone's serial (SOA-EDIT-API DEFAULT) and reported, naming the owners."""
    provider = provider_for(powerdns)
    owner, elsewhere = fresh_owner(), fresh_owner()
    provider.apply(add(owner, record(1)))
    reads = []

    def after_get(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if response.request.method == "GET":
            reads.append(1)
            if len(reads) == 1:
                api_replace(powerdns, elsewhere, record(5).to_text())
        return response

    provider._http().hooks["response"].append(after_get)
    provider.apply(add(owner, record(2), expected=frozenset({record(1)})))
    assert bind_read(powerdns.port, owner)[0] == {record(1), record(2)}
    assert any("edited by someone else" in n and str(owner) in n for n in provider.notes), provider.notes


def race(powerdns: PowerDns, owner: dns.name.Name, base: frozenset[Tlsa],
         wanted: dict[str, frozenset[Tlsa]]) -> tuple[dict[str, str], dict[str, PowerDnsProvider]]:
    """Each writer (its own provider, as two runs would have) applies base -> wanted[name] at once."""
    writers = {name: provider_for(powerdns) for name in wanted}
    results: dict[str, str] = {}
    barrier = threading.Barrier(len(writers))

    def write(name: str) -> None:
        barrier.wait()
        try:
            writers[name].apply(add(owner, *wanted[name] - base, expected=base))
            results[name] = "ok"
        except ProviderConflict:
            results[name] = "conflict"
        except Exception as exc:  # reported with the round's other outcome
            results[name] = repr(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, writers


def test_two_writers_at_once(powerdns: PowerDns) -> None:
    """Two tlsa-manager runs change one owner at the same moment, 12 times over: the RRset
    always ends as one writer's whole result, a writer told "ok" whose result is not
    there was overwritten by one that noticed and said so, and never both fail."""
    owner = fresh_owner()
    provider_for(powerdns).apply(add(owner, record(1)))
    outcomes: dict[str, int] = {}
    for round_ in range(12):
        base = bind_read(powerdns.port, owner)[0]
        wanted = {name: base | {record(100 * round_ + i)} for i, name in enumerate(("a", "b"), 2)}
        results, writers = race(powerdns, owner, base, wanted)
        final = bind_read(powerdns.port, owner)[0]
        winners = [n for n in wanted if final == wanted[n]]
        assert len(winners) == 1, (results, final)  # one whole result, never a mix
        assert results[winners[0]] == "ok"
        loser = "b" if winners[0] == "a" else "a"
        if results[loser] == "ok":  # lost its write without knowing: the winner must have noticed
            assert any("edited by someone else" in n for n in writers[winners[0]].notes), results
        key = f"{results['a']}/{results['b']}"
        outcomes[key] = outcomes.get(key, 0) + 1
    assert set(outcomes) <= {"ok/conflict", "conflict/ok", "ok/ok"}, outcomes


def test_other_edits_by_serial() -> None:
    assert not other_edits(2026112501, 2026112502, "DEFAULT")
    assert not other_edits(2026010107, 2026112501, "DEFAULT")  # first edit of a new day
    assert other_edits(2026112501, 2026112503, "DEFAULT")
    assert other_edits(2026010107, 2026112502, "DEFAULT")
    assert not other_edits(2**32 - 1, 0, "INCREASE")
    assert other_edits(7, 9, "increase")
    assert not other_edits(7, 99, "EPOCH") and not other_edits(7, 7, "")


def test_disabled_records_are_kept_disabled(powerdns: PowerDns) -> None:
    owner = fresh_owner()
    powerdns.api("PATCH", f"/zones/{ZONE}.", {"rrsets": [{
        "name": owner.to_text(), "type": "TLSA", "ttl": 300, "changetype": "REPLACE",
        "records": [{"content": record(1).to_text(), "disabled": False},
                    {"content": record(66).to_text(), "disabled": True}]}]})
    provider = provider_for(powerdns)
    assert provider.read([owner])[owner].records == {record(1)}  # what is served
    provider.apply(add(owner, record(2), expected=frozenset({record(1)})))
    zone: Any = powerdns.api("GET", f"/zones/{ZONE}.")  # whole: filtered GETs omit disabled records
    rrset = next(r for r in zone["rrsets"] if r["name"] == owner.to_text() and r["type"] == "TLSA")
    records = {(r["content"], r["disabled"]) for r in rrset["records"]}
    assert records == {(record(1).to_text(), False), (record(2).to_text(), False), (record(66).to_text(), True)}


def test_upper_case_hex_from_other_tools_is_the_same_record(powerdns: PowerDns) -> None:
    owner = fresh_owner()
    api_replace(powerdns, owner, record(0xABC).to_text().upper())
    provider = provider_for(powerdns)
    assert provider.read([owner])[owner].records == {record(0xABC)}
    before = provider.writes
    provider.apply(add(owner, record(0xABC), expected=frozenset({record(0xABC)})))
    assert provider.writes == before  # same record: nothing to write


def test_wrong_key_unreachable_api_and_missing_zone_are_one_line(powerdns: PowerDns, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-key-0123\n")
    owner = fresh_owner()
    with pytest.raises(ProviderError, match="refused the API key") as exc:
        PowerDnsProvider({"api_url": powerdns.api_url, "api_key_file": str(wrong)}).read([owner])
    assert "not-the-key-0123" not in str(exc.value) and powerdns.api_key not in str(exc.value)
    with pytest.raises(ProviderError, match="cannot reach the PowerDNS API"):
        PowerDnsProvider({"api_url": f"http://127.0.0.1:{free_port()}", "api_key_file": str(wrong)}).read([owner])
    with pytest.raises(ProviderError, match="no zone holding"):
        provider_for(powerdns).read([dns.name.from_text("_25._tcp.mx.elsewhere.invalid.")])
    with pytest.raises(ProviderError, match="not found"):
        provider_for(powerdns, zone="nozone.test").read([dns.name.from_text("_25._tcp.mx.nozone.test.")])
    with pytest.raises(ConfigError, match="not an http"):
        PowerDnsProvider({"api_url": "ftp://x", "api_key_file": str(wrong)})
    with pytest.raises(ConfigError, match="timeout must be seconds"):
        PowerDnsProvider({"api_url": powerdns.api_url, "api_key_file": str(wrong), "timeout": "soon"})
    with pytest.raises(ProviderError, match="cannot reach") as exc:
        PowerDnsProvider({"api_url": f"http://admin:hunter2-pw@127.0.0.1:{free_port()}",
                          "api_key_file": str(wrong)}).read([owner])
    assert "hunter2-pw" not in str(exc.value) and "127.0.0.1" in str(exc.value)


def test_longest_zone_wins_and_ns_come_from_the_core(powerdns: PowerDns) -> None:
    inner = f"inner-{secrets.token_hex(3)}.{ZONE}."
    powerdns.api("POST", "/zones", {"name": inner, "kind": "Native", "nameservers": [f"ns1.{ZONE}."]})
    owner = dns.name.from_text(f"_25._tcp.mx.{inner}")
    provider = provider_for(powerdns, dns_server=powerdns.endpoint)
    provider.apply(add(owner, record(3)))
    zone: Any = powerdns.api("GET", f"/zones/{inner}")
    assert any(r["type"] == "TLSA" for r in zone["rrsets"])
    servers = provider.nameservers(dns.name.from_text(ZONE))
    assert {s.name for s in servers} == {"ns1.example.test (127.0.0.1)", "ns2.example.test (127.0.0.1)"}
    assert provider_for(powerdns, nameservers=[powerdns.endpoint]).nameservers(dns.name.from_text(ZONE))[0].port \
        == powerdns.port


# ---------------------------------------------------------------- through the CLI


def test_sync_and_new_key_rollover_through_the_cli(cli: CliRunner, powerdns: PowerDns, tmp_path: Path) -> None:
    from cloud_rollover import sync_and_rollover

    owner, served = sync_and_rollover(cli, tmp_path, f"""
type = "powerdns"
api_url = "{powerdns.api_url}"
api_key_file = "{powerdns.key_file}"
""", lambda o: bind_read(powerdns.port, o)[0], ZONE, nameservers=[powerdns.endpoint], secret=powerdns.api_key,
        removal_wait=10)
    view = DnsView([parse_endpoint(powerdns.endpoint)]).view(parse_endpoint(powerdns.endpoint), owner)
    assert view.error is None and view.records == served
