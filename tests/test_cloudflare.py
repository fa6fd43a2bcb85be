"""Cloudflare through the real SDK against the local fake: faults, counts, marks, secrets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import dns.name
import pytest

from tlsa_manager.errors import ConfigError, ProviderError
from tlsa_manager.provider import ChangeSet, OwnerChange
from tlsa_manager.records import Tlsa
from tlsa_manager_providers.cloudflare import MARKER, CloudflareProvider

from conftest import EXAMPLES

if TYPE_CHECKING:
    from cloudflare_fake import FakeCloudflare
    from conftest import CliRunner

A = Tlsa.from_text("3 1 1 " + "AA" * 32)
B = Tlsa.from_text("3 1 1 " + "bb" * 32)
OWNER = dns.name.from_text("_25._tcp.mail.example.test.")


@pytest.fixture
def cf(cf_fake: FakeCloudflare, monkeypatch: pytest.MonkeyPatch) -> CloudflareProvider:
    monkeypatch.setenv("CF_TOKEN", cf_fake.token)
    return CloudflareProvider({"api_token_env": "CF_TOKEN", "api_url": cf_fake.base_url, "max_retry_after": 2})


def add(record: Tlsa = A, expected: frozenset[Tlsa] = frozenset()) -> ChangeSet:
    return ChangeSet((OwnerChange(OWNER, expected, frozenset({record}), ttl=300),))


def test_one_list_and_one_batch_per_zone_and_noop_writes_nothing(cf: CloudflareProvider, cf_fake: FakeCloudflare) -> None:
    cf.read([OWNER])
    cf_fake.counts.clear()
    cf.apply(add())
    assert cf_fake.counts["GET /zones/{id}/dns_records"] == 1
    assert cf_fake.counts["POST /zones/{id}/dns_records/batch"] == 1
    cf_fake.counts.clear()
    cf.apply(ChangeSet((OwnerChange(OWNER, frozenset({A}), frozenset({A}), ttl=300, expected_ttl=300),)))
    assert cf_fake.counts["POST /zones/{id}/dns_records/batch"] == 0
    rrset = cf.read([OWNER])[OWNER]
    assert rrset.records == {A} and rrset.managed == {A}  # marked by comment, hex case-insensitive
    assert all(r["comment"] == MARKER for r in cf_fake.zone("example.test").records.values())


def test_pagination_follows_result_info(cf: CloudflareProvider, cf_fake: FakeCloudflare) -> None:
    zone = cf_fake.zone("example.test")
    owners = [dns.name.from_text(f"_25._tcp.mx{i}.example.test.") for i in range(250)]
    for i, o in enumerate(owners):
        cf_fake.add_record(zone, o.to_text(omit_final_dot=True), f"3 1 1 {i:064x}")
    cf.read([owners[0]])
    cf_fake.counts.clear()
    read = cf.read(owners)
    assert all(len(read[o].records) == 1 for o in owners)
    assert cf_fake.counts["GET /zones/{id}/dns_records"] == 3  # 100 + 100 + 50, no empty 4th page


def test_429_honours_retry_after_then_succeeds(cf: CloudflareProvider, cf_fake: FakeCloudflare) -> None:
    cf.read([OWNER])
    cf_fake.fail_next("429", retry_after=1)
    cf.apply(add())
    assert cf.read([OWNER])[OWNER].records == {A}


def test_429_beyond_bound_is_an_error(cf: CloudflareProvider, cf_fake: FakeCloudflare) -> None:
    cf.read([OWNER])
    cf_fake.fail_next("429", retry_after=3600)
    with pytest.raises(ProviderError, match=r"rate-limits .*Retry-After 3600"):
        cf.apply(add())
    assert cf.read([OWNER])[OWNER].records == frozenset()


@pytest.mark.parametrize("status", ["500", "502"])
def test_5xx_on_batch_is_reported_nothing_applied(cf: CloudflareProvider, cf_fake: FakeCloudflare, status: str) -> None:
    cf_fake.fail_next(status, only="batch")
    with pytest.raises(ProviderError, match=rf"Cloudflare answered {status}.*nothing was applied"):
        cf.apply(add())
    assert cf.read([OWNER])[OWNER].records == frozenset()
    assert cf_fake.counts["POST /zones/{id}/dns_records/batch"] == 1  # never retried blindly


def test_5xx_on_read_is_retried(cf: CloudflareProvider, cf_fake: FakeCloudflare) -> None:
    cf.read([OWNER])
    cf_fake.fail_next("502")
    assert cf.read([OWNER])[OWNER].records == frozenset()


def test_malformed_payload(cf: CloudflareProvider, cf_fake: FakeCloudflare) -> None:
    cf.read([OWNER])
    cf_fake.fail_next("malformed")
    with pytest.raises(ProviderError, match="malformed answer"):
        cf.read([OWNER])


def test_bad_token_never_printed(cf_fake: FakeCloudflare, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "wrong-token-" + "9" * 30
    monkeypatch.setenv("CF_TOKEN", secret)
    provider = CloudflareProvider({"api_token_env": "CF_TOKEN", "api_url": cf_fake.base_url})
    with pytest.raises(ProviderError) as info:
        provider.read([OWNER])
    assert "refused the token" in str(info.value) and secret not in str(info.value) and secret not in repr(provider)


def test_identical_record_added_meanwhile_counts_as_present(cf: CloudflareProvider, cf_fake: FakeCloudflare) -> None:
    cf.read([OWNER])
    zone = cf_fake.zone("example.test")
    cf_fake.before_batch.append(lambda z: cf_fake.add_record(zone, "_25._tcp.mail.example.test", A.to_text()))
    cf.apply(add())
    assert cf.read([OWNER])[OWNER].records == {A}


def test_concurrent_addition_survives(cf: CloudflareProvider, cf_fake: FakeCloudflare) -> None:
    cf.apply(add())
    zone = cf_fake.zone("example.test")
    cf_fake.before_batch.append(lambda z: cf_fake.add_record(zone, "_25._tcp.mail.example.test", B.to_text()))
    cf.apply(ChangeSet((OwnerChange(OWNER, frozenset({A}), frozenset({Tlsa.from_text("2 1 1 " + "cc" * 32)}),
                                    ttl=300),)))
    assert B in cf.read([OWNER])[OWNER].records  # never a blind overwrite


def test_dnssec_not_active_is_noted(cf_fake: FakeCloudflare, monkeypatch: pytest.MonkeyPatch) -> None:
    cf_fake.zone("example.test").dnssec = "disabled"
    monkeypatch.setenv("CF_TOKEN", cf_fake.token)
    provider = CloudflareProvider({"api_token_env": "CF_TOKEN", "api_url": cf_fake.base_url})
    provider.read([OWNER])
    assert any("DNSSEC of example.test is 'disabled'" in n for n in provider.notes)


def test_zone_id_skips_lookup(cf_fake: FakeCloudflare, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CF_TOKEN", cf_fake.token)
    zone = cf_fake.zone("example.test")
    provider = CloudflareProvider({"api_token_env": "CF_TOKEN", "api_url": cf_fake.base_url, "zone_id": zone.id})
    provider.apply(add())
    assert cf_fake.counts["GET /zones"] == 0


def test_token_configuration_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"CLOUDFLARE_API_TOKEN \(Cloudflare API token\) is not set"):
        CloudflareProvider({})
    with pytest.raises(ConfigError, match="cannot read the Cloudflare API token"):
        CloudflareProvider({"api_token_file": str(tmp_path / "missing")})


def test_automatic_ttl_is_read_as_cloudflares_300_seconds(
    cf_fake: FakeCloudflare, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record made in the dashboard has TTL "Auto", which the API gives as ttl 1 (served
    as 300 s). Before: plan showed "(TTL 1)" and every sync failed with "TTL 1 ... is below
    the cloudflare minimum of 60 s; set ttl = 60 or more", though the host's ttl was 300."""
    zone = cf_fake.zone("example.test")
    cf_fake.add_record(zone, "_25._tcp.mail.example.test", B.to_text(), ttl=1)
    monkeypatch.setenv("CF_TOKEN", cf_fake.token)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[providers.cf]\ntype = "cloudflare"\napi_token_env = "CF_TOKEN"\napi_url = "{cf_fake.base_url}"\n'
        f'[hosts."mail.example.test"]\ncert = "{EXAMPLES / "mail.example.com" / "fullchain.pem"}"\nttl = 300\n'
    )
    result = cli("--config", config, "sync")
    assert result.code == 0, result.err
    assert "TTL 1" not in result.out + result.err
    records = zone.records.values()
    assert len(records) == 5 and {r["ttl"] for r in records if r["comment"]} == {300}
    assert CloudflareProvider({"api_token_env": "CF_TOKEN", "api_url": cf_fake.base_url}).read([OWNER])[OWNER].ttl == 300
