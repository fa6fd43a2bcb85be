"""deSEC through the provider's HTTP client against the local fake of its API (tests/desec_fake.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.name
import pytest

from tlsa_manager.errors import ConfigError, ProviderError
from tlsa_manager.provider import ChangeSet, OwnerChange
from tlsa_manager.records import Tlsa
from tlsa_manager.testing import Backend, ProviderContract

from cloud_rollover import sync_and_rollover
from conftest import CliRunner

if TYPE_CHECKING:
    from tlsa_manager.testing import Held
    from tlsa_manager_providers.desec import DesecProvider

    from desec_fake import FakeDesec

A = Tlsa.from_text("3 1 1 " + "AA" * 32)
B = Tlsa.from_text("3 1 1 " + "bb" * 32)
OWNER = dns.name.from_text("_25._tcp.mail.example.test.")


@pytest.fixture
def desec_fake() -> Iterator[FakeDesec]:
    from desec_fake import FakeDesec

    fake = FakeDesec().start()
    fake.add_domain("example.test", minimum_ttl=60)  # lowered, as deSEC support does on request
    yield fake
    fake.stop()


def make(fake: FakeDesec, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> DesecProvider:
    from tlsa_manager_providers.desec import DesecProvider

    monkeypatch.setenv("DESEC_TEST_TOKEN", fake.token)
    return DesecProvider({"api_token_env": "DESEC_TEST_TOKEN", "api_url": fake.base_url, "max_retry_after": 2,
                          **extra})


def held(fake: FakeDesec, owner: dns.name.Name) -> Held:
    rrset = fake.domains["example.test"].rrsets.get((owner.relativize(dns.name.from_text("example.test.")).to_text(),
                                                     "TLSA"))
    if rrset is None:
        return frozenset(), None
    return frozenset(Tlsa.from_text(r) for r in rrset["records"]), rrset["ttl"]


@pytest.fixture
def desec_backend(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> Backend:
    desec_fake.domains["example.test"].minimum_ttl = 3600  # deSEC's default, for the contract
    provider = make(desec_fake, monkeypatch)

    def external_add(owner: dns.name.Name, record: Tlsa) -> None:
        records, ttl = held(desec_fake, owner)
        subname = owner.relativize(dns.name.from_text("example.test.")).to_text()
        desec_fake.set_rrset("example.test", subname, [r.to_text() for r in records | {record}], ttl or 3600)

    return Backend(provider, lambda o: held(desec_fake, o), external_add, zone="example.test")



class TestDesecContract(ProviderContract):
    secret_values = ("desec-test-token-0123456789abcdef",)

    @pytest.fixture
    def backend(self, desec_backend: Backend) -> Backend:
        return desec_backend

def add(record: Tlsa = A, ttl: int = 300) -> ChangeSet:
    return ChangeSet((OwnerChange(OWNER, frozenset(), frozenset({record}), ttl=ttl),))


def test_one_lookup_one_read_one_patch_and_noop_writes_nothing(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(desec_fake, monkeypatch)
    provider.apply(add())
    assert desec_fake.counts == {"GET /domains/": 1, "GET /domains/{name}/rrsets/{subname}/{type}/": 1,
                                 "PATCH /domains/{name}/rrsets/": 1}
    desec_fake.counts.clear()
    provider.apply(ChangeSet((OwnerChange(OWNER, frozenset({A}), frozenset({A}), ttl=300, expected_ttl=300),)))
    assert desec_fake.counts["PATCH /domains/{name}/rrsets/"] == 0
    assert provider.read([OWNER])[OWNER].records == {A}


def test_canonical_rewrite_of_case_and_long_hex_is_read_back(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    """deSEC stores lower-case hex split in 128-character chunks; reading ignores both."""
    spki = Tlsa.from_text("3 1 0 " + "AB" * 91)  # a full P-256 SPKI: 182 hex digits
    provider = make(desec_fake, monkeypatch)
    provider.apply(add(spki))
    stored = desec_fake.domains["example.test"].rrsets[("_25._tcp.mail", "TLSA")]["records"][0]
    assert stored == "3 1 0 " + "ab" * 64 + " " + "ab" * 27  # what deSEC hands back
    assert provider.read([OWNER])[OWNER].records == {spki}
    provider.apply(ChangeSet((OwnerChange(OWNER, frozenset({spki}), frozenset({B}), ttl=300, expected_ttl=300),)))
    assert held(desec_fake, OWNER)[0] == {spki, B}  # the compare saw the same set despite the rewrite


def test_ttl_below_the_domain_minimum_is_refused_before_any_write(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    desec_fake.domains["example.test"].minimum_ttl = 3600  # deSEC's default
    provider = make(desec_fake, monkeypatch)
    with pytest.raises(ProviderError, match=r"deSEC does not accept TTL 300 .* minimum there is 3600.*set ttl = 3600"):
        provider.apply(add(ttl=300))
    with pytest.raises(ProviderError, match="its maximum is 86400"):
        provider.apply(add(ttl=86401))
    assert desec_fake.counts["PATCH /domains/{name}/rrsets/"] == 0
    provider.apply(add(ttl=3600))
    assert held(desec_fake, OWNER) == (frozenset({A}), 3600)


def test_validation_errors_are_one_line_per_item(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(desec_fake, monkeypatch)
    provider.read([OWNER])  # the domain (minimum 60) is cached
    desec_fake.domains["example.test"].minimum_ttl = 7200  # raised meanwhile
    with pytest.raises(ProviderError, match=r"rejected the bulk update: item 0 ttl: Ensure this value is greater "
                                            r"than or equal to 7200"):
        provider.apply(add(ttl=300))
    assert held(desec_fake, OWNER) == (frozenset(), None)


def test_pagination_follows_link_headers(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    owners = [dns.name.from_text(f"_25._tcp.mx{i}.example.test.") for i in range(1200)]
    for i in range(len(owners)):
        desec_fake.set_rrset("example.test", f"_25._tcp.mx{i}", [f"3 1 1 {i:064x}"])
    provider = make(desec_fake, monkeypatch)
    provider.read([owners[0]])
    desec_fake.counts.clear()
    read = provider.read(owners)
    assert all(read[o].records == {Tlsa.from_text(f"3 1 1 {i:064x}")} for i, o in enumerate(owners))
    assert desec_fake.counts["GET /domains/{name}/rrsets/"] == 3  # 500 + 500 + 200, no 400 "Pagination required"


def test_domains_listed_once_per_run_past_one_page(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(600):
        desec_fake.add_domain(f"d{i:03d}.test")
    desec_fake.add_domain("zzz.example.test")
    provider = make(desec_fake, monkeypatch)
    owners = [dns.name.from_text(f"_25._tcp.mx{i}.zzz.example.test.") for i in range(3)]
    assert {provider.domain_for(o)["name"] for o in owners} == {"zzz.example.test"}
    assert provider.domain_for(OWNER)["name"] == "example.test"
    assert desec_fake.counts["GET /domains/"] == 2  # 500 + 102, once for every host


def test_429_waits_retry_after_then_applies(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(desec_fake, monkeypatch)
    desec_fake.fail_next("429", retry_after=1, only="PATCH")
    provider.apply(add())
    assert held(desec_fake, OWNER)[0] == {A}
    assert desec_fake.counts["PATCH /domains/{name}/rrsets/"] == 2


def test_429_beyond_bound_is_an_error_and_nothing_changes(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(desec_fake, monkeypatch)
    desec_fake.fail_next("429", retry_after=3600, only="PATCH")
    with pytest.raises(ProviderError, match=r"rate-limits the bulk update \(Retry-After 3600s\)"):
        provider.apply(add())
    assert held(desec_fake, OWNER) == (frozenset(), None)


def test_write_rate_window_is_respected(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three writes within a second: deSEC allows two, the third waits its Retry-After."""
    provider = make(desec_fake, monkeypatch)
    owners = [dns.name.from_text(f"_25._tcp.mx{i}.example.test.") for i in range(3)]
    for owner in owners:
        provider.apply(ChangeSet((OwnerChange(owner, frozenset(), frozenset({A}), ttl=300),)))
    assert all(held(desec_fake, o)[0] == {A} for o in owners)
    assert desec_fake.counts["PATCH /domains/{name}/rrsets/"] >= 3


@pytest.mark.parametrize("status", ["500", "503"])
def test_5xx_on_patch_is_reported_nothing_applied(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch, status: str) -> None:
    provider = make(desec_fake, monkeypatch)
    desec_fake.fail_next(status, only="PATCH")
    with pytest.raises(ProviderError, match=rf"deSEC answered {status} to the bulk update; nothing was applied"):
        provider.apply(add())
    assert desec_fake.counts["PATCH /domains/{name}/rrsets/"] == 1  # never retried blindly


def test_5xx_on_read_is_retried_and_malformed_answer_is_one_error(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(desec_fake, monkeypatch)
    provider.read([OWNER])
    desec_fake.fail_next("502")
    assert provider.read([OWNER])[OWNER].records == frozenset()
    provider.apply(add())
    desec_fake.fail_next("malformed")
    with pytest.raises(ProviderError, match="malformed answer"):
        provider.read([OWNER])


def test_bad_token_never_shown(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    from tlsa_manager_providers.desec import DesecProvider

    secret = "wrong-desec-token-" + "4" * 20
    monkeypatch.setenv("DESEC_TEST_TOKEN", secret)
    provider = DesecProvider({"api_token_env": "DESEC_TEST_TOKEN", "api_url": desec_fake.base_url})
    with pytest.raises(ProviderError) as info:
        provider.read([OWNER])
    assert "refused the token" in str(info.value) and "Invalid token" in str(info.value)
    assert secret not in str(info.value) and secret not in repr(provider)


def test_domain_lookup_and_setting(desec_fake: FakeDesec, monkeypatch: pytest.MonkeyPatch) -> None:
    desec_fake.add_domain("mail.example.test")
    provider = make(desec_fake, monkeypatch)
    assert provider.domain_for(OWNER)["name"] == "mail.example.test"  # the longest that holds it
    with pytest.raises(ProviderError, match="no deSEC domain holds"):
        provider.read([dns.name.from_text("_25._tcp.mx.other.test.")])
    fixed = make(desec_fake, monkeypatch, domain="example.test")
    fixed.apply(add())
    assert desec_fake.domains["example.test"].rrsets and not desec_fake.domains["mail.example.test"].rrsets


def test_token_configuration_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tlsa_manager_providers.desec import DesecProvider

    monkeypatch.delenv("DESEC_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"DESEC_TOKEN \(deSEC token\) is not set"):
        DesecProvider({})
    with pytest.raises(ConfigError, match="cannot read the deSEC token"):
        DesecProvider({"api_token_file": str(tmp_path / "missing")})


def test_sync_and_new_key_rollover_through_the_cli(cli: CliRunner, desec_fake: FakeDesec, tmp_path: Path) -> None:
    desec_fake.domains["example.test"].minimum_ttl = 1  # the rollover test's short TTL
    token_file = tmp_path / "desec.token"
    token_file.write_text(desec_fake.token + "\n")
    sync_and_rollover(cli, tmp_path, f"""
type = "desec"
api_token_file = "{token_file}"
api_url = "{desec_fake.base_url}"
""", lambda owner: held(desec_fake, owner)[0])



def test_ttl_below_the_domain_minimum_through_the_cli(cli: CliRunner, desec_fake: FakeDesec, tmp_path: Path) -> None:
    """deSEC's default minimum is 3600: a host TTL of 300 stops the sync with one line
    naming the fix, and nothing is written."""
    from cloud_rollover import one_host

    config, host, owner, _live, _staged = one_host(tmp_path, f"""
type = "desec"
api_token = "{desec_fake.token}"
api_url = "{desec_fake.base_url}"
""", ttl=300)
    desec_fake.domains["example.test"].minimum_ttl = 3600
    result = cli("--config", config, "sync", host)
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert "deSEC does not accept TTL 300" in result.err and "set ttl = 3600 or more" in result.err
    assert "Traceback" not in result.err and desec_fake.token not in result.err + result.out
    assert desec_fake.counts["PATCH /domains/{name}/rrsets/"] == 0
    assert held(desec_fake, owner) == (frozenset(), None)
