"""One contract every provider passes (like keyring's backend suite), each on its own fixture.

- rfc2136: a real BIND primary + secondary (DNSSEC, TSIG, NOTIFY/IXFR) on loopback;
- zonefile: a zone file in a temp dir (and, in test_zonefile.py, loaded by a real BIND);
- cloudflare: the real SDK against the local fake API (test_cloudflare.py adds its own faults).
Every write is checked by reading back through an independent path.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.name
import pytest

from tlsa_manager.errors import ProviderConflict, ProviderError
from tlsa_manager.provider import ChangeSet, OwnerChange, Provider
from tlsa_manager.records import Tlsa

from servers import ZONE


def rec(n: int, kind: str = "3 1 1") -> Tlsa:
    return Tlsa.from_text(f"{kind} {n:064x}")


@dataclass
class Backend:
    provider: Provider
    read_back: Callable[[dns.name.Name], tuple[frozenset[Tlsa], int | None]]
    external_add: Callable[[dns.name.Name, Tlsa], None]
    writes: Callable[[], int]


def _owner() -> dns.name.Name:
    return dns.name.from_text(f"_25._tcp.mx-{secrets.token_hex(4)}.{ZONE}.")


@pytest.fixture(params=["rfc2136", "zonefile", "cloudflare"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture
def rfc2136_backend(bind) -> Backend:  # type: ignore[no-untyped-def]
    from tlsa_manager_providers.rfc2136 import Rfc2136Provider

    from conftest import bind_read, nsupdate_add

    provider = Rfc2136Provider({"server": bind.primary.endpoint, "tsig_key_file": str(bind.key_file),
                                "nameservers": bind.nameservers})
    return Backend(provider, lambda o: bind_read(bind.primary.port, o),
                   lambda o, r: nsupdate_add(bind, o, r), lambda: provider.updates_sent)


@pytest.fixture
def zonefile_backend(tmp_path: Path) -> Backend:
    from tlsa_manager_providers.zonefile import ZoneFileProvider

    from conftest import zonefile_read

    path = tmp_path / f"db.{ZONE}"
    path.write_text(f"$ORIGIN {ZONE}.\n$TTL 300\n@ IN SOA ns1 hostmaster ( 2026112501 60 30 3600 30 )\n"
                    "  IN NS ns1\nns1 IN A 127.0.0.1\n")
    provider = ZoneFileProvider({"zone_file": str(path)})

    def external_add(owner: dns.name.Name, record: Tlsa) -> None:
        with path.open("a") as handle:
            handle.write(f"{owner} 300 IN TLSA {record}\n")

    return Backend(provider, lambda o: zonefile_read(path, o), external_add, lambda: provider.writes)


def test_absent_owner_reads_empty(backend: Backend) -> None:
    owner = _owner()
    assert backend.provider.read([owner])[owner].records == frozenset()


def test_add_to_empty_then_change_two_owners_at_once(backend: Backend) -> None:
    a, b = _owner(), _owner()
    backend.provider.apply(ChangeSet((OwnerChange(a, frozenset(), frozenset({rec(1), rec(2)}), ttl=300),)))
    assert backend.read_back(a) == (frozenset({rec(1), rec(2)}), 300)
    assert backend.provider.read([a])[a].records == {rec(1), rec(2)}
    backend.provider.apply(ChangeSet((
        OwnerChange(a, frozenset({rec(1), rec(2)}), frozenset({rec(3)}), frozenset({rec(1)}), ttl=300),
        OwnerChange(b, frozenset(), frozenset({rec(4, "2 1 1")}), ttl=300),
    )))
    assert backend.read_back(a)[0] == {rec(2), rec(3)}
    assert backend.read_back(b)[0] == {rec(4, "2 1 1")}


def test_conflict_when_someone_else_changed_it_and_nothing_applied(backend: Backend) -> None:
    owner = _owner()
    backend.provider.apply(ChangeSet((OwnerChange(owner, frozenset(), frozenset({rec(1)}), ttl=300),)))
    backend.external_add(owner, rec(99))
    with pytest.raises(ProviderConflict):
        backend.provider.apply(ChangeSet((
            OwnerChange(owner, frozenset({rec(1)}), frozenset({rec(2)}), frozenset({rec(1)}), ttl=300),)))
    assert backend.read_back(owner)[0] == {rec(1), rec(99)}


def test_never_leaves_a_managed_rrset_empty(backend: Backend) -> None:
    owner = _owner()
    backend.provider.apply(ChangeSet((OwnerChange(owner, frozenset(), frozenset({rec(1)}), ttl=300),)))
    with pytest.raises(ProviderError, match="without TLSA records"):
        backend.provider.apply(ChangeSet((OwnerChange(owner, frozenset({rec(1)}), delete=frozenset({rec(1)})),)))
    assert backend.read_back(owner)[0] == {rec(1)}


def test_unknown_records_are_kept(backend: Backend) -> None:
    owner = _owner()
    backend.provider.apply(ChangeSet((OwnerChange(owner, frozenset(), frozenset({rec(1)}), ttl=300),)))
    backend.external_add(owner, rec(77))
    backend.provider.apply(ChangeSet((
        OwnerChange(owner, frozenset({rec(1), rec(77)}), frozenset({rec(2)}), frozenset({rec(1)}), ttl=300),)))
    assert backend.read_back(owner)[0] == {rec(2), rec(77)}


def test_ttl_change_keeps_records_and_one_ttl(backend: Backend) -> None:
    owner = _owner()
    backend.provider.apply(ChangeSet((OwnerChange(owner, frozenset(), frozenset({rec(1), rec(2)}), ttl=300),)))
    backend.provider.apply(ChangeSet((OwnerChange(owner, frozenset({rec(1), rec(2)}), ttl=120, expected_ttl=300),)))
    assert backend.read_back(owner) == (frozenset({rec(1), rec(2)}), 120)


def test_noop_writes_nothing(backend: Backend) -> None:
    owner = _owner()
    backend.provider.apply(ChangeSet((OwnerChange(owner, frozenset(), frozenset({rec(1)}), ttl=300),)))
    before = backend.writes()
    backend.provider.apply(ChangeSet((OwnerChange(owner, frozenset({rec(1)}), frozenset({rec(1)}), ttl=300,
                                                  expected_ttl=300),)))
    assert backend.writes() == before


def test_repr_shows_no_settings(backend: Backend) -> None:
    assert repr(backend.provider).startswith("<") and "secret" not in repr(backend.provider).lower()
    assert os.environ.get("CF_TEST_TOKEN", "no-token") not in repr(backend.provider)
