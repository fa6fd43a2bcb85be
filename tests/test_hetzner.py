"""Hetzner DNS through the real hcloud SDK against the local fake of its zone endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dns.name
import pytest

from tlsa_manager.errors import ConfigError, ProviderConflict, ProviderError
from tlsa_manager.provider import ChangeSet, OwnerChange
from tlsa_manager.records import Tlsa
from tlsa_manager.testing import Backend, ProviderContract

from cloud_rollover import sync_and_rollover
from conftest import CliRunner

if TYPE_CHECKING:
    from tlsa_manager.testing import Held
    from tlsa_manager_providers.hetzner import HetznerProvider

    from hetzner_fake import FakeHetzner

A = Tlsa.from_text("3 1 1 " + "aa" * 32)
B = Tlsa.from_text("3 1 1 " + "bb" * 32)
OWNER = dns.name.from_text("_25._tcp.mail.example.test.")
NAME = "_25._tcp.mail"


@pytest.fixture
def hz() -> Iterator[FakeHetzner]:
    from hetzner_fake import FakeHetzner

    fake = FakeHetzner().start()
    fake.add_zone("example.test")
    yield fake
    fake.stop()


def make(fake: FakeHetzner, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> HetznerProvider:
    from tlsa_manager_providers.hetzner import HetznerProvider

    monkeypatch.setenv("HZ_TEST_TOKEN", fake.token)
    return HetznerProvider({"api_token_env": "HZ_TEST_TOKEN", "api_url": fake.base_url, "poll_interval": 0.01,
                            **extra})


def held(fake: FakeHetzner, owner: dns.name.Name, zone: str = "example.test") -> Held:
    rrset = fake.zone(zone).rrsets.get((owner.relativize(dns.name.from_text(zone + ".")).to_text(), "TLSA"))
    if rrset is None:
        return frozenset(), None
    return frozenset(Tlsa.from_text(r["value"]) for r in rrset["records"]), rrset["ttl"]


@pytest.fixture
def hetzner_backend(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> Backend:
    provider = make(hz, monkeypatch)

    def external_add(owner: dns.name.Name, record: Tlsa) -> None:
        records, ttl = held(hz, owner)
        hz.set_rrset("example.test", owner.relativize(dns.name.from_text("example.test.")).to_text(),
                      [r.to_text() for r in records | {record}], ttl or 300)

    return Backend(provider, lambda o: held(hz, o), external_add, zone="example.test")



class TestHetznerContract(ProviderContract):
    max_writes_per_change_set = None  # one write per owner: Hetzner has no batch
    secret_values = ("hcloud-test-token-" + "x" * 46,)

    @pytest.fixture
    def backend(self, hetzner_backend: Backend) -> Backend:
        return hetzner_backend

def add(record: Tlsa = A, ttl: int = 300) -> ChangeSet:
    return ChangeSet((OwnerChange(OWNER, frozenset(), frozenset({record}), ttl=ttl),))


def test_create_waits_for_its_action_and_noop_writes_nothing(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(hz, monkeypatch)
    hz.action_polls = 2
    provider.apply(add())
    assert hz.counts["POST /zones/{zone}/rrsets"] == 1
    assert hz.counts["GET /actions/{id}"] == 3  # running, running, success
    hz.counts.clear()
    provider.apply(ChangeSet((OwnerChange(OWNER, frozenset({A}), frozenset({A}), ttl=300, expected_ttl=300),)))
    assert sum(n for k, n in hz.counts.items() if k.startswith("POST")) == 0
    rrset = provider.read([OWNER])[OWNER]
    assert rrset.records == {A} and rrset.managed == {A}  # marked by the record comment


def test_change_keeps_others_comments_and_sets_the_whole_list(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    hz.set_rrset("example.test", NAME, ["3 1 1 " + "AA" * 32], 300, comment="added by hand")
    provider = make(hz, monkeypatch)
    rrset = provider.read([OWNER])[OWNER]
    assert rrset.records == {A} and rrset.managed == frozenset()  # upper-case hex read as the same record
    provider.apply(ChangeSet((OwnerChange(OWNER, frozenset({A}), frozenset({B}), ttl=300, expected_ttl=300),)))
    records = hz.zone("example.test").rrsets[(NAME, "TLSA")]["records"]
    assert {r["comment"] for r in records} == {"added by hand", "managed by tlsa-manager"}
    assert hz.counts["POST /zones/{zone}/rrsets/{name}/{type}/actions/set_records"] == 1


def test_rrset_without_ttl_reads_the_zone_default(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    hz.set_rrset("example.test", NAME, [A.to_text()], None)
    assert make(hz, monkeypatch).read([OWNER])[OWNER].ttl == 3600


def test_created_by_someone_else_meanwhile_is_a_conflict(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(hz, monkeypatch)
    hz.before_write.append(lambda: hz.set_rrset("example.test", NAME, [B.to_text()]))
    with pytest.raises(ProviderConflict, match="created by someone else"):
        provider.apply(add())
    assert held(hz, OWNER)[0] == {B}


def test_ttl_below_60_is_refused_before_any_write(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(hz, monkeypatch)
    with pytest.raises(ProviderError, match=r"Hetzner does not accept TTL 30 .*minimum there is 60"):
        provider.apply(add(ttl=30))
    assert not hz.counts


def test_pagination_follows_next_page(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    owners = [dns.name.from_text(f"_25._tcp.mx{i}.example.test.") for i in range(120)]
    for i in range(len(owners)):
        hz.set_rrset("example.test", f"_25._tcp.mx{i}", [f"3 1 1 {i:064x}"])
    provider = make(hz, monkeypatch)
    provider.read([owners[0]])
    hz.counts.clear()
    read = provider.read(owners)
    assert all(read[o].records == {Tlsa.from_text(f"3 1 1 {i:064x}")} for i, o in enumerate(owners))
    assert hz.counts["GET /zones/{zone}/rrsets"] == 3  # 50 + 50 + 20


def test_rate_limit_and_conflict_are_retried_by_the_sdk(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(hz, monkeypatch)
    provider.read([OWNER])
    hz.fail_next("rate_limit_exceeded", only="POST")
    hz.fail_next("conflict", only="POST")
    provider.apply(add())
    assert held(hz, OWNER)[0] == {A}
    assert hz.counts["POST /zones/{zone}/rrsets"] == 3


def test_real_bucket_exhausted_is_one_error(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    import hcloud._client

    provider = make(hz, monkeypatch)
    provider.read([OWNER])
    monkeypatch.setattr(hcloud._client, "exponential_backoff_function", lambda **kw: lambda retries: 0.01)
    provider._client = None  # a client made with the short backoff
    hz.bucket = hz.capacity = 0.0  # the hour's 3,600 are used up
    with pytest.raises(ProviderError, match=r"kept rate-limiting .*3,600 requests an hour"):
        provider.apply(add())
    assert held(hz, OWNER) == (frozenset(), None)


def test_failed_action_is_reported(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(hz, monkeypatch)
    hz.fail_next("action_error")
    with pytest.raises(ProviderError, match=r"could not carry out creating the RRset \(action_failed"):
        provider.apply(add())


def test_protected_rrset_secondary_zone_and_readonly_token(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    hz.set_rrset("example.test", NAME, [A.to_text()], protected=True)
    provider = make(hz, monkeypatch)
    with pytest.raises(ProviderError, match="protected against changes"):
        provider.apply(ChangeSet((OwnerChange(OWNER, frozenset({A}), frozenset({B}), ttl=300, expected_ttl=300),)))
    hz.add_zone("secondary.test", mode="secondary")
    with pytest.raises(ProviderError, match="is a secondary zone"):
        make(hz, monkeypatch).read([dns.name.from_text("_25._tcp.mx.secondary.test.")])
    hz.readonly_tokens.add("read-only-token-" + "r" * 40)
    monkeypatch.setenv("HZ_TEST_TOKEN", "read-only-token-" + "r" * 40)
    from tlsa_manager_providers.hetzner import HetznerProvider

    readonly = HetznerProvider({"api_token_env": "HZ_TEST_TOKEN", "api_url": hz.base_url})
    with pytest.raises(ProviderError, match="the API token is read-only") as info:
        readonly.apply(ChangeSet((OwnerChange(dns.name.from_text("_25._tcp.mx9.example.test."), frozenset(),
                                              frozenset({A}), ttl=300),)))
    assert "r" * 40 not in str(info.value)


def test_bad_token_never_shown(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    from tlsa_manager_providers.hetzner import HetznerProvider

    secret = "wrong-hcloud-token-" + "5" * 40
    monkeypatch.setenv("HZ_TEST_TOKEN", secret)
    provider = HetznerProvider({"api_token_env": "HZ_TEST_TOKEN", "api_url": hz.base_url})
    with pytest.raises(ProviderError) as info:
        provider.read([OWNER])
    assert "refused the token" in str(info.value) and secret not in str(info.value) and secret not in repr(provider)


def test_zone_lookup_and_setting(hz: FakeHetzner, monkeypatch: pytest.MonkeyPatch) -> None:
    hz.add_zone("mail.example.test")
    provider = make(hz, monkeypatch)
    assert provider.zone_for(OWNER).name == "mail.example.test"
    with pytest.raises(ProviderError, match="no Hetzner zone holds"):
        provider.read([dns.name.from_text("_25._tcp.mx.other.test.")])
    fixed = make(hz, monkeypatch, zone="example.test")
    fixed.apply(add())
    assert held(hz, OWNER)[0] == {A} and not hz.zone("mail.example.test").rrsets


def test_token_configuration_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tlsa_manager_providers.hetzner import HetznerProvider

    monkeypatch.delenv("HCLOUD_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"HCLOUD_TOKEN \(Hetzner API token\) is not set"):
        HetznerProvider({})
    with pytest.raises(ConfigError, match="cannot read the Hetzner API token"):
        HetznerProvider({"api_token_file": str(tmp_path / "missing")})


def test_sync_and_new_key_rollover_through_the_cli(cli: CliRunner, hz: FakeHetzner, tmp_path: Path) -> None:
    """Hetzner's 60 s minimum would make this test wait minutes: the fake accepts the short
    TTL of the rollover tests and min_ttl says so (the 60 s refusal is tested above)."""
    hz.min_ttl = 1
    sync_and_rollover(cli, tmp_path, f"""
type = "hetzner"
api_token = "{hz.token}"
api_url = "{hz.base_url}"
poll_interval = 0.01
min_ttl = 1
""", lambda owner: held(hz, owner)[0])

