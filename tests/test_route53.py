"""Route 53 through the real boto3 against moto's server made strict (tests/route53_fake.py)."""

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

from conftest import CliRunner

if TYPE_CHECKING:
    from tlsa_manager.testing import Held
    from tlsa_manager_providers.route53 import Route53Provider

    from route53_fake import StrictRoute53

# moto warns that an injected error code (Throttling) has no shape in its Route 53 model; it
# still answers it the way Route 53 does (HTTP 400, that code), which botocore retries.
pytestmark = pytest.mark.filterwarnings(r"ignore:Exception\(_Fault\) with code")
SECRET = "r53-secret-" + "7" * 30
A = Tlsa.from_text("3 1 1 " + "aa" * 32)
B = Tlsa.from_text("3 1 1 " + "bb" * 32)
OWNER = dns.name.from_text("_25._tcp.mail.example.test.")


@pytest.fixture
def r53(monkeypatch: pytest.MonkeyPatch) -> Iterator[StrictRoute53]:
    from route53_fake import StrictRoute53

    fake = StrictRoute53(monkeypatch).start()
    fake.zone_id = fake.add_zone("example.test")
    yield fake
    fake.stop()


def make(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> Route53Provider:
    from tlsa_manager_providers.route53 import Route53Provider

    monkeypatch.setenv("R53_TEST_SECRET", SECRET)
    settings = {"access_key_id": "AKIDTESTING", "secret_access_key_env": "R53_TEST_SECRET",
                "endpoint_url": r53.endpoint, "change_poll_seconds": 0.01, **extra}
    return Route53Provider(settings)


@pytest.fixture
def route53_backend(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> Backend:
    from route53_fake import read_tlsa, upsert_tlsa

    provider = make(r53, monkeypatch)
    client = r53.client()

    def read_back(owner: dns.name.Name) -> Held:
        values, ttl = read_tlsa(client, r53.zone_id, owner.to_text())
        return frozenset(Tlsa.from_text(v) for v in values), ttl

    def external_add(owner: dns.name.Name, record: Tlsa) -> None:
        values, ttl = read_tlsa(client, r53.zone_id, owner.to_text())
        upsert_tlsa(client, r53.zone_id, owner.to_text(), [*values, record.to_text()], ttl or 300)

    return Backend(provider, read_back, external_add, zone="example.test")



class TestRoute53Contract(ProviderContract):
    secret_values = (SECRET,)

    @pytest.fixture
    def backend(self, route53_backend: Backend) -> Backend:
        return route53_backend

def add(record: Tlsa = A, expected: frozenset[Tlsa] = frozenset(), owner: dns.name.Name = OWNER) -> ChangeSet:
    return ChangeSet((OwnerChange(owner, expected, frozenset({record}), ttl=300),))


def test_one_change_batch_waits_insync_and_noop_writes_nothing(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(r53, monkeypatch)
    r53.pending_polls = 3
    provider.apply(add())
    assert r53.counts["change_resource_record_sets"] == 1
    assert r53.counts["get_change"] == 3  # PENDING, PENDING, INSYNC: polled until in sync
    r53.counts.clear()
    provider.apply(ChangeSet((OwnerChange(OWNER, frozenset({A}), frozenset({A}), ttl=300, expected_ttl=300),)))
    assert r53.counts["change_resource_record_sets"] == 0
    assert provider.read([OWNER])[OWNER].records == {A}


def test_change_still_pending_at_timeout_is_reported(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(r53, monkeypatch, change_timeout=0.05, change_poll_seconds=0.02)
    r53.pending_polls = 1000
    with pytest.raises(ProviderError, match=r"still PENDING after 0.05s.*accepted and will apply"):
        provider.apply(add())


def test_edit_between_read_and_write_fails_the_whole_batch(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DELETE names the exact RRset read: Route 53 refuses it if it changed meanwhile."""
    from route53_fake import read_tlsa, upsert_tlsa

    provider = make(r53, monkeypatch)
    other = dns.name.from_text("_25._tcp.mx2.example.test.")
    provider.apply(add())
    client = r53.client()
    r53.before_change.append(lambda: upsert_tlsa(client, r53.zone_id, OWNER.to_text(), [A.to_text(), B.to_text()]))
    with pytest.raises(ProviderConflict, match="changed since they were read"):
        provider.apply(ChangeSet((
            OwnerChange(OWNER, frozenset({A}), frozenset({Tlsa.from_text("2 1 1 " + "cc" * 32)}), ttl=300),
            OwnerChange(other, frozenset(), frozenset({A}), ttl=300),
        )))
    assert sorted(read_tlsa(client, r53.zone_id, OWNER.to_text())[0]) == sorted([A.to_text(), B.to_text()])
    assert read_tlsa(client, r53.zone_id, other.to_text()) == ([], None)  # all or nothing


def test_same_result_written_meanwhile_counts_as_done(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    from route53_fake import upsert_tlsa

    provider = make(r53, monkeypatch)
    client = r53.client()
    r53.before_change.append(lambda: upsert_tlsa(client, r53.zone_id, OWNER.to_text(), [A.to_text()]))
    provider.apply(add())  # our CREATE fails (exists), the re-read shows the wanted set
    assert provider.read([OWNER])[OWNER].records == {A}


def test_lost_answer_retried_by_botocore_counts_as_done(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch is applied but its answer is lost: botocore sends it again, Route 53 refuses
    the repeat (the DELETE no longer matches), and the re-read shows the change is there."""
    provider = make(r53, monkeypatch)
    provider.apply(add())
    r53.fail_next("Throttling", only="change_resource_record_sets", after=True)
    provider.apply(ChangeSet((OwnerChange(OWNER, frozenset({A}), frozenset({B}), frozenset({A}), ttl=300,
                                          expected_ttl=300),)))
    assert r53.counts["change_resource_record_sets"] == 3  # the first, the applied one, its refused repeat
    assert provider.read([OWNER])[OWNER].records == {B}


def test_upper_case_hex_kept_and_deleted_exactly(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    """Route 53 stores values as written; the DELETE must repeat them byte for byte."""
    from route53_fake import read_tlsa, upsert_tlsa

    provider = make(r53, monkeypatch)
    client = r53.client()
    upsert_tlsa(client, r53.zone_id, OWNER.to_text(), ["3 1 1 " + "AA" * 32], 600)
    rrset = provider.read([OWNER])[OWNER]
    assert rrset.records == {A} and rrset.ttl == 600
    provider.apply(ChangeSet((OwnerChange(OWNER, frozenset({A}), frozenset({B}), ttl=600, expected_ttl=600),)))
    assert sorted(read_tlsa(client, r53.zone_id, OWNER.to_text())[0]) == sorted([A.to_text(), B.to_text()])


def test_throttling_is_retried_with_backoff(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(r53, monkeypatch)
    provider.read([OWNER])
    r53.fail_next("Throttling", only="change_resource_record_sets")
    r53.fail_next("PriorRequestNotComplete", only="change_resource_record_sets")
    provider.apply(add())
    assert r53.counts["change_resource_record_sets"] == 3
    assert provider.read([OWNER])[OWNER].records == {A}


def test_throttling_beyond_max_attempts_is_one_error(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(r53, monkeypatch, max_attempts=2)
    provider.read([OWNER])
    for _ in range(2):
        r53.fail_next("Throttling", only="list_resource_record_sets")
    with pytest.raises(ProviderError, match="kept throttling listing record sets"):
        provider.apply(add())


def test_refused_credentials_never_shown(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(r53, monkeypatch)
    r53.fail_next("AccessDenied")
    with pytest.raises(ProviderError) as info:
        provider.read([OWNER])
    assert "refused the credentials" in str(info.value) and SECRET not in str(info.value)
    assert SECRET not in repr(provider) and "AKIDTESTING" not in repr(provider)


def test_pagination_lists_the_zone_in_pages_of_300(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(r53, monkeypatch)
    owners = [dns.name.from_text(f"_25._tcp.mx{i}.example.test.") for i in range(320)]
    provider.apply(ChangeSet(tuple(OwnerChange(o, frozenset(), frozenset({Tlsa.from_text(f"3 1 1 {i:064x}")}), ttl=300)
                                   for i, o in enumerate(owners))))
    assert r53.counts["change_resource_record_sets"] == 1  # 320 records fit one batch
    r53.counts.clear()
    read = provider.read(owners)
    assert all(read[o].records == {Tlsa.from_text(f"3 1 1 {i:064x}")} for i, o in enumerate(owners))
    assert r53.counts["list_resource_record_sets"] == 2  # 320 TLSA + SOA + NS = 322: 300 + 22


def test_more_than_1000_records_split_per_owner(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(r53, monkeypatch)
    owners = [dns.name.from_text(f"_25._tcp.mx{i}.example.test.") for i in range(201)]
    provider.apply(ChangeSet(tuple(
        OwnerChange(o, frozenset(), frozenset(Tlsa.from_text(f"3 1 1 {i:060x}{k:04x}") for k in range(5)), ttl=300)
        for i, o in enumerate(owners))))
    assert r53.counts["change_resource_record_sets"] == 2  # 1,005 records: 1,000 + 5
    assert all(len(r.records) == 5 for r in provider.read(owners).values())


def test_zone_lookup_skips_private_zones_and_zone_id_skips_lookup(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    r53.add_zone("mail.example.test", private=True)
    provider = make(r53, monkeypatch)
    assert provider.zone_for(OWNER) == (r53.zone_id, "example.test.")
    r53.counts.clear()
    direct = make(r53, monkeypatch, hosted_zone_id=f"/hostedzone/{r53.zone_id}")
    direct.apply(add())
    assert r53.counts["list_hosted_zones"] == 0
    with pytest.raises(ProviderError, match="no public Route 53 hosted zone holds"):
        provider.read([dns.name.from_text("_25._tcp.mx.other.test.")])


def test_ttl_outside_route53_range_is_refused(r53: StrictRoute53, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = make(r53, monkeypatch)
    with pytest.raises(ProviderError, match="does not accept TTL 4294967296"):
        provider.apply(ChangeSet((OwnerChange(OWNER, frozenset(), frozenset({A}), ttl=2**32),)))


def test_credential_configuration_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tlsa_manager_providers.route53 import Route53Provider

    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"AWS_SECRET_ACCESS_KEY \(AWS secret access key\) is not set"):
        Route53Provider({"access_key_id": "AKID"})
    with pytest.raises(ConfigError, match="cannot read the AWS secret access key"):
        Route53Provider({"access_key_id": "AKID", "secret_access_key_file": str(tmp_path / "none")})
    with pytest.raises(ConfigError, match="needs access_key_id"):
        Route53Provider({"secret_access_key_file": str(tmp_path / "none")})
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="no AWS credentials for Route 53"):
        Route53Provider({"endpoint_url": "http://127.0.0.1:9"}).read([OWNER])


def test_sync_and_new_key_rollover_through_the_cli(cli: CliRunner, r53: StrictRoute53, tmp_path: Path) -> None:
    from cloud_rollover import sync_and_rollover
    from route53_fake import read_tlsa

    secret_file = tmp_path / "aws.secret"
    secret_file.write_text(SECRET + "\n")
    client = r53.client()
    sync_and_rollover(cli, tmp_path, f"""
type = "route53"
access_key_id = "AKIDTESTING"
secret_access_key_file = "{secret_file}"
endpoint_url = "{r53.endpoint}"
change_poll_seconds = 0.01
""", lambda owner: frozenset(Tlsa.from_text(v) for v in read_tlsa(client, r53.zone_id, owner.to_text())[0]))
    assert r53.counts["get_change"] >= 3  # every write waited for INSYNC



def test_edit_during_a_cli_sync_is_kept_by_one_re_plan(cli: CliRunner, r53: StrictRoute53, tmp_path: Path) -> None:
    """Someone adds a record between the sync's read and its change batch: Route 53 refuses
    the batch, the engine re-plans once on the new RRset, and both survive."""
    from cloud_rollover import one_host
    from route53_fake import read_tlsa, upsert_tlsa

    secret_file = tmp_path / "aws.secret"
    secret_file.write_text(SECRET + "\n")
    config, host, owner, _live, _staged = one_host(tmp_path, f"""
type = "route53"
access_key_id = "AKIDTESTING"
secret_access_key_file = "{secret_file}"
endpoint_url = "{r53.endpoint}"
change_poll_seconds = 0.01
""")
    client = r53.client()
    theirs = Tlsa.from_text("3 1 1 " + "ee" * 32)
    r53.before_change.append(lambda: upsert_tlsa(client, r53.zone_id, owner.to_text(), [theirs.to_text()], 2))
    result = cli("--config", config, "sync", host)
    assert result.code == 0, result.err
    assert "re-planning once" in result.out + result.err
    values = {Tlsa.from_text(v) for v in read_tlsa(client, r53.zone_id, owner.to_text())[0]}
    assert theirs in values and len(values) == 5  # theirs + 3 1 1 + three issuer pins
    assert r53.counts["change_resource_record_sets"] == 3  # theirs, our refused batch, our second
    assert SECRET not in result.out + result.err
