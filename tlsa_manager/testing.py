"""The provider contract: one pytest suite every provider, built-in or plugin, inherits.

As keyring ships its backend tests and certbot its plugin tests, a provider's own test
module subclasses :class:`ProviderContract` and supplies one fixture, ``backend``,
returning a :class:`Backend`: the provider under test plus an independent way to see
what the backend really holds (a DNS query to the server, the fake's own store, the
file parsed by another parser) and a way to change it behind the provider's back::

    from tlsa_manager.testing import Backend, ProviderContract

    class TestMyProvider(ProviderContract):
        @pytest.fixture
        def backend(self, tmp_path):
            provider = MyProvider({"path": str(tmp_path / "records.json")})
            return Backend(provider, read_back=..., external_add=...)

The suite checks what the engine relies on: reads, adds, removals, replacements, a
compare-and-swap conflict that changes nothing, idempotence, a no-op that writes
nothing (``provider.writes`` is the one counter every provider keeps), TTL changes,
many owners in one call, records others put there kept, and no secret in ``repr``.

This module imports pytest; only tests import it (the tool itself never does).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import dns.name
import pytest

from tlsa_manager.errors import ProviderConflict, ProviderError
from tlsa_manager.provider import ChangeSet, OwnerChange, Provider
from tlsa_manager.records import Tlsa

__all__ = ["Backend", "ProviderContract", "record"]

#: (records, TTL) at one owner as the backend itself holds them; (frozenset(), None) if none
Held = tuple[frozenset[Tlsa], int | None]


@dataclass
class Backend:
    """A provider under test and independent access to the backend behind it."""

    provider: Provider
    #: what the backend really holds at an owner, read without the provider
    read_back: Callable[[dns.name.Name], Held]
    #: someone else's edit: add one record at an owner (TTL as the backend likes)
    external_add: Callable[[dns.name.Name, Tlsa], None]
    #: the provider's write counter; default ``provider.writes``
    writes: Callable[[], int] | None = None
    #: the zone the test owners are made in
    zone: str = "example.test"

    def write_count(self) -> int:
        return self.writes() if self.writes is not None else int(self.provider.writes)

    def owner(self, port: int = 25) -> dns.name.Name:
        """A fresh owner name nobody has used (tests share one server per session)."""
        return dns.name.from_text(f"_{port}._tcp.mx-{secrets.token_hex(4)}.{self.zone.rstrip('.')}.")


def record(n: int, kind: str = "3 1 1") -> Tlsa:
    """A distinct SHA-256 record, numbered for readable failures."""
    return Tlsa.from_text(f"{kind} {n:064x}")


class ProviderContract:
    """Inherit and provide the ``backend`` fixture; every ``test_`` method then runs."""

    #: most writes one change set touching many owners of one zone may take (None: any)
    max_writes_per_change_set: ClassVar[int | None] = 1
    #: how many owners the "many owners" tests use
    many_owners: ClassVar[int] = 12
    #: setting values that must never show in ``repr`` or errors (e.g. a test token)
    secret_values: ClassVar[Sequence[str]] = ()

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError("a ProviderContract subclass provides the backend fixture")

    # -- helpers --------------------------------------------------------------

    @staticmethod
    def ttl(backend: Backend, factor: int = 1) -> int:
        """A TTL the backend accepts: 300 s, or its minimum when that is higher."""
        return max(300, backend.provider.capabilities.min_ttl) * factor

    def publish(self, backend: Backend, owner: dns.name.Name, *records: Tlsa) -> frozenset[Tlsa]:
        wanted = frozenset(records)
        backend.provider.apply(ChangeSet((OwnerChange(owner, frozenset(), wanted, ttl=self.ttl(backend)),)))
        return wanted

    # -- read -----------------------------------------------------------------

    def test_absent_owner_reads_empty(self, backend: Backend) -> None:
        owner = backend.owner()
        rrset = backend.provider.read([owner])[owner]
        assert rrset.records == frozenset() and rrset.empty
        assert backend.read_back(owner) == (frozenset(), None)

    def test_read_sees_what_others_published(self, backend: Backend) -> None:
        owner = backend.owner()
        backend.external_add(owner, record(5))
        held = backend.read_back(owner)
        rrset = backend.provider.read([owner])[owner]
        assert rrset.records == held[0] == {record(5)}
        assert rrset.ttl == held[1]

    # -- add, remove, replace -------------------------------------------------

    def test_add_to_empty(self, backend: Backend) -> None:
        owner = backend.owner()
        wanted = self.publish(backend, owner, record(1), record(2, "2 1 1"))
        assert backend.read_back(owner) == (wanted, self.ttl(backend))
        rrset = backend.provider.read([owner])[owner]
        assert (rrset.records, rrset.ttl) == (wanted, self.ttl(backend))

    def test_add_beside_existing(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1))
        backend.provider.apply(
            ChangeSet(
                (
                    OwnerChange(
                        owner,
                        frozenset({record(1)}),
                        frozenset({record(2)}),
                        ttl=self.ttl(backend),
                        expected_ttl=self.ttl(backend),
                    ),
                )
            )
        )
        assert backend.read_back(owner) == (frozenset({record(1), record(2)}), self.ttl(backend))

    def test_remove_one_record(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1), record(2))
        backend.provider.apply(
            ChangeSet(
                (
                    OwnerChange(
                        owner,
                        frozenset({record(1), record(2)}),
                        delete=frozenset({record(1)}),
                        ttl=self.ttl(backend),
                        expected_ttl=self.ttl(backend),
                    ),
                )
            )
        )
        assert backend.read_back(owner) == (frozenset({record(2)}), self.ttl(backend))
        assert backend.provider.read([owner])[owner].records == {record(2)}

    def test_replace_in_one_change(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1), record(2))
        backend.provider.apply(
            ChangeSet(
                (
                    OwnerChange(
                        owner,
                        frozenset({record(1), record(2)}),
                        frozenset({record(3)}),
                        frozenset({record(1)}),
                        ttl=self.ttl(backend),
                        expected_ttl=self.ttl(backend),
                    ),
                )
            )
        )
        assert backend.read_back(owner)[0] == {record(2), record(3)}

    def test_records_others_put_there_are_kept(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1))
        backend.external_add(owner, record(77))
        backend.provider.apply(
            ChangeSet(
                (
                    OwnerChange(
                        owner,
                        frozenset({record(1), record(77)}),
                        frozenset({record(2)}),
                        frozenset({record(1)}),
                        ttl=self.ttl(backend),
                    ),
                )
            )
        )
        assert backend.read_back(owner)[0] == {record(2), record(77)}

    def test_never_leaves_a_managed_rrset_empty(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1))
        before = backend.write_count()
        with pytest.raises(ProviderError, match="without TLSA records"):
            backend.provider.apply(
                ChangeSet((OwnerChange(owner, frozenset({record(1)}), delete=frozenset({record(1)})),))
            )
        assert backend.read_back(owner)[0] == {record(1)}
        assert backend.write_count() == before

    # -- compare-and-swap -----------------------------------------------------

    def test_conflict_when_someone_else_changed_it_and_nothing_applied(self, backend: Backend) -> None:
        owner, other = backend.owner(), backend.owner()
        self.publish(backend, owner, record(1))
        backend.external_add(owner, record(99))
        with pytest.raises(ProviderConflict):
            backend.provider.apply(
                ChangeSet(
                    (
                        OwnerChange(other, frozenset(), frozenset({record(3)}), ttl=self.ttl(backend)),
                        OwnerChange(
                            owner,
                            frozenset({record(1)}),
                            frozenset({record(2)}),
                            frozenset({record(1)}),
                            ttl=self.ttl(backend),
                        ),
                    )
                )
            )
        assert backend.read_back(owner)[0] == {record(1), record(99)}
        assert backend.read_back(other)[0] == frozenset(), "a change set is all or nothing"

    def test_conflict_when_someone_else_created_it(self, backend: Backend) -> None:
        owner = backend.owner()
        backend.external_add(owner, record(42))
        with pytest.raises(ProviderConflict):
            self.publish(backend, owner, record(1))
        assert backend.read_back(owner)[0] == {record(42)}

    # -- idempotence and no-ops -----------------------------------------------

    def test_reapplying_a_change_set_never_duplicates(self, backend: Backend) -> None:
        """A retry after a lost answer: the records stand once; a conflict is fine, a change is not."""
        owner = backend.owner()
        changes = ChangeSet((OwnerChange(owner, frozenset(), frozenset({record(1)}), ttl=self.ttl(backend)),))
        backend.provider.apply(changes)
        first = backend.read_back(owner)
        with contextlib.suppress(ProviderConflict):
            backend.provider.apply(changes)
        assert backend.read_back(owner) == first == (frozenset({record(1)}), self.ttl(backend))
        assert backend.provider.read([owner])[owner].records == {record(1)}

    def test_read_plan_apply_twice_converges(self, backend: Backend) -> None:
        owner = backend.owner()
        wanted = frozenset({record(1), record(2)})
        for _ in range(2):
            current = backend.provider.read([owner])[owner]
            change = OwnerChange(
                owner,
                current.records,
                wanted - current.records,
                current.records - wanted,
                ttl=self.ttl(backend),
                expected_ttl=current.ttl,
            )
            backend.provider.apply(ChangeSet((change,)))
        assert backend.read_back(owner) == (wanted, self.ttl(backend))

    def test_noop_writes_nothing(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1))
        before = backend.write_count()
        assert before >= 1, "the write counter counts writes"
        backend.provider.apply(
            ChangeSet(
                (
                    OwnerChange(
                        owner,
                        frozenset({record(1)}),
                        frozenset({record(1)}),
                        ttl=self.ttl(backend),
                        expected_ttl=self.ttl(backend),
                    ),
                )
            )
        )
        backend.provider.apply(ChangeSet())
        assert backend.write_count() == before
        assert backend.read_back(owner) == (frozenset({record(1)}), self.ttl(backend))

    def test_write_counter_counts_each_write(self, backend: Backend) -> None:
        owner = backend.owner()
        start = backend.write_count()
        self.publish(backend, owner, record(1))
        middle = backend.write_count()
        backend.provider.apply(
            ChangeSet(
                (OwnerChange(owner, frozenset({record(1)}), frozenset({record(2)}), ttl=self.ttl(backend)),)
            )
        )
        assert start < middle < backend.write_count()

    # -- TTL --------------------------------------------------------------------

    def test_ttl_change_keeps_records_and_one_ttl(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1), record(2))
        backend.provider.apply(
            ChangeSet(
                (
                    OwnerChange(
                        owner,
                        frozenset({record(1), record(2)}),
                        ttl=self.ttl(backend, 2),
                        expected_ttl=self.ttl(backend),
                    ),
                )
            )
        )
        assert backend.read_back(owner) == (frozenset({record(1), record(2)}), self.ttl(backend, 2))
        assert backend.provider.read([owner])[owner].ttl == self.ttl(backend, 2)

    def test_ttl_below_the_minimum_is_refused_or_raised(self, backend: Backend) -> None:
        minimum = backend.provider.capabilities.min_ttl
        if minimum <= 1:
            pytest.skip(f"{backend.provider.name} takes any TTL")
        owner = backend.owner()
        try:
            backend.provider.apply(
                ChangeSet((OwnerChange(owner, frozenset(), frozenset({record(1)}), ttl=minimum - 1),))
            )
        except ProviderError as exc:
            assert "TTL" in exc.message or "ttl" in exc.message
            assert backend.read_back(owner)[0] == frozenset()
            return
        held = backend.read_back(owner)
        assert held == (frozenset({record(1)}), minimum), "rounded up to the minimum"

    # -- many owners ------------------------------------------------------------

    def test_many_owners_in_one_call(self, backend: Backend) -> None:
        owners = [backend.owner(25 + i % 2) for i in range(self.many_owners)]
        before = backend.write_count()
        backend.provider.apply(
            ChangeSet(
                tuple(
                    OwnerChange(
                        o,
                        frozenset(),
                        frozenset({record(i), record(i + 1000, "2 1 1")}),
                        ttl=self.ttl(backend),
                    )
                    for i, o in enumerate(owners)
                )
            )
        )
        writes = backend.write_count() - before
        assert writes >= 1
        if self.max_writes_per_change_set is not None:
            assert writes <= self.max_writes_per_change_set
        read = backend.provider.read(owners)
        assert set(read) == set(owners)
        for i, owner in enumerate(owners):
            wanted = frozenset({record(i), record(i + 1000, "2 1 1")})
            assert read[owner].records == wanted
            assert backend.read_back(owner)[0] == wanted
        before = backend.write_count()
        backend.provider.apply(
            ChangeSet(
                tuple(
                    OwnerChange(
                        o,
                        read[o].records,
                        frozenset({record(i + 2000)}),
                        frozenset({record(i)}),
                        ttl=self.ttl(backend),
                        expected_ttl=read[o].ttl,
                    )
                    for i, o in enumerate(owners)
                )
            )
        )
        assert backend.write_count() - before <= (self.max_writes_per_change_set or self.many_owners)
        for i, owner in enumerate(owners):
            assert backend.read_back(owner)[0] == {record(i + 2000), record(i + 1000, "2 1 1")}

    def test_read_of_many_owners_mixes_present_and_absent(self, backend: Backend) -> None:
        present, absent = backend.owner(), backend.owner()
        self.publish(backend, present, record(8))
        read = backend.provider.read([present, absent])
        assert read[present].records == {record(8)} and read[absent].records == frozenset()

    # -- secrets ----------------------------------------------------------------

    def test_repr_shows_no_settings(self, backend: Backend) -> None:
        text = repr(backend.provider)
        assert text.startswith("<") and "secret" not in text.lower()
        for value in self.secret_values:
            assert value not in text
        redacted = type(backend.provider).redacted(backend.provider.config)
        for value in self.secret_values:
            assert value not in str(redacted)
