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
from collections.abc import Callable, Iterable, Sequence
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
    #: setting values that must never show in ``repr`` or errors (e.g. a test token); a
    #: ``backend`` fixture that learns its secret only when the server starts sets it on the instance
    secret_values: Sequence[str] = ()

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError("a ProviderContract subclass provides the backend fixture")

    # -- helpers --------------------------------------------------------------

    @staticmethod
    def ttl(backend: Backend, factor: int = 1) -> int:
        """A TTL the backend accepts: 300 s, or its minimum when that is higher."""
        return max(300, backend.provider.capabilities.min_ttl) * factor

    def change(
        self,
        backend: Backend,
        owner: dns.name.Name,
        expected: Iterable[Tlsa],
        result: Iterable[Tlsa],
        *,
        ttl: int | None = None,
    ) -> OwnerChange:
        """The change from ``expected`` (at the contract's TTL) to ``result`` at ``ttl``."""
        before, after = frozenset(expected), frozenset(result)
        return OwnerChange(
            owner,
            before,
            after - before,
            before - after,
            ttl=self.ttl(backend) if ttl is None else ttl,
            expected_ttl=self.ttl(backend) if before else None,
        )

    @staticmethod
    def apply(backend: Backend, *changes: OwnerChange) -> None:
        backend.provider.apply(ChangeSet(changes))

    def publish(self, backend: Backend, owner: dns.name.Name, *records: Tlsa) -> frozenset[Tlsa]:
        self.apply(backend, self.change(backend, owner, (), records))
        return frozenset(records)

    def held(self, backend: Backend, *records: Tlsa, factor: int = 1) -> Held:
        """What the backend should hold: these records at the contract's TTL."""
        return frozenset(records), self.ttl(backend, factor)

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
        self.publish(backend, owner, record(1), record(2, "2 1 1"))
        assert backend.read_back(owner) == self.held(backend, record(1), record(2, "2 1 1"))
        rrset = backend.provider.read([owner])[owner]
        assert (rrset.records, rrset.ttl) == self.held(backend, record(1), record(2, "2 1 1"))

    def test_add_beside_existing(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1))
        self.apply(backend, self.change(backend, owner, {record(1)}, {record(1), record(2)}))
        assert backend.read_back(owner) == self.held(backend, record(1), record(2))

    def test_remove_one_record(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1), record(2))
        self.apply(backend, self.change(backend, owner, {record(1), record(2)}, {record(2)}))
        assert backend.read_back(owner) == self.held(backend, record(2))
        assert backend.provider.read([owner])[owner].records == {record(2)}

    def test_replace_in_one_change(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1), record(2))
        self.apply(backend, self.change(backend, owner, {record(1), record(2)}, {record(2), record(3)}))
        assert backend.read_back(owner) == self.held(backend, record(2), record(3))

    def test_records_others_put_there_are_kept(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1))
        backend.external_add(owner, record(77))
        self.apply(backend, self.change(backend, owner, {record(1), record(77)}, {record(2), record(77)}))
        assert backend.read_back(owner)[0] == {record(2), record(77)}

    def test_never_leaves_a_managed_rrset_empty(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1))
        before = backend.write_count()
        with pytest.raises(ProviderError, match="without TLSA records"):
            self.apply(backend, self.change(backend, owner, {record(1)}, ()))
        assert backend.read_back(owner)[0] == {record(1)}
        assert backend.write_count() == before

    # -- compare-and-swap -----------------------------------------------------

    def test_conflict_when_someone_else_changed_it_and_nothing_applied(self, backend: Backend) -> None:
        owner, other = backend.owner(), backend.owner()
        self.publish(backend, owner, record(1))
        backend.external_add(owner, record(99))
        with pytest.raises(ProviderConflict):
            self.apply(
                backend,
                self.change(backend, other, (), {record(3)}),
                self.change(backend, owner, {record(1)}, {record(2)}),
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
        self.publish(backend, owner, record(1))
        with contextlib.suppress(ProviderConflict):
            self.publish(backend, owner, record(1))
        assert backend.read_back(owner) == self.held(backend, record(1))
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
            self.apply(backend, change)
        assert backend.read_back(owner) == self.held(backend, *wanted)

    def test_noop_writes_nothing(self, backend: Backend) -> None:
        owner = backend.owner()
        self.publish(backend, owner, record(1))
        before = backend.write_count()
        assert before >= 1, "the write counter counts writes"
        self.apply(backend, self.change(backend, owner, {record(1)}, {record(1)}))
        self.apply(backend)
        assert backend.write_count() == before
        assert backend.read_back(owner) == self.held(backend, record(1))

    def test_write_counter_counts_each_write(self, backend: Backend) -> None:
        owner = backend.owner()
        start = backend.write_count()
        self.publish(backend, owner, record(1))
        middle = backend.write_count()
        self.apply(backend, self.change(backend, owner, {record(1)}, {record(1), record(2)}))
        assert start < middle < backend.write_count()

    # -- TTL --------------------------------------------------------------------

    def test_ttl_change_keeps_records_and_one_ttl(self, backend: Backend) -> None:
        owner = backend.owner()
        both = {record(1), record(2)}
        self.publish(backend, owner, *both)
        self.apply(backend, self.change(backend, owner, both, both, ttl=self.ttl(backend, 2)))
        assert backend.read_back(owner) == self.held(backend, *both, factor=2)
        assert backend.provider.read([owner])[owner].ttl == self.ttl(backend, 2)

    def test_ttl_below_the_minimum_is_refused_or_raised(self, backend: Backend) -> None:
        minimum = backend.provider.capabilities.min_ttl
        owner = backend.owner()
        if minimum <= 1:
            # A provider that declares no minimum must publish the smallest TTL as asked:
            # the planner times its gates by the TTL it wrote.
            self.apply(backend, self.change(backend, owner, (), {record(1)}, ttl=1))
            assert backend.read_back(owner) == (frozenset({record(1)}), 1), "a TTL of 1 was not kept"
            return
        try:
            self.apply(backend, self.change(backend, owner, (), {record(1)}, ttl=minimum - 1))
        except ProviderError as exc:
            assert "TTL" in exc.message or "ttl" in exc.message
            assert backend.read_back(owner)[0] == frozenset()
            return
        assert backend.read_back(owner) == (frozenset({record(1)}), minimum), "rounded up to the minimum"

    # -- many owners ------------------------------------------------------------

    def test_many_owners_in_one_call(self, backend: Backend) -> None:
        owners = [backend.owner(25 + i % 2) for i in range(self.many_owners)]
        first = {o: {record(i), record(i + 1000, "2 1 1")} for i, o in enumerate(owners)}
        then = {o: {record(i + 2000), record(i + 1000, "2 1 1")} for i, o in enumerate(owners)}
        before = backend.write_count()
        self.apply(backend, *(self.change(backend, o, (), first[o]) for o in owners))
        writes = backend.write_count() - before
        assert writes >= 1
        if self.max_writes_per_change_set is not None:
            assert writes <= self.max_writes_per_change_set
        read = backend.provider.read(owners)
        assert set(read) == set(owners)
        for owner in owners:
            assert read[owner].records == first[owner] == backend.read_back(owner)[0]
        before = backend.write_count()
        self.apply(backend, *(self.change(backend, o, first[o], then[o]) for o in owners))
        assert backend.write_count() - before <= (self.max_writes_per_change_set or self.many_owners)
        for owner in owners:
            assert backend.read_back(owner)[0] == then[owner]

    def test_read_of_many_owners_mixes_present_and_absent(self, backend: Backend) -> None:
        present, absent = backend.owner(), backend.owner()
        self.publish(backend, present, record(8))
        read = backend.provider.read([present, absent])
        assert read[present].records == {record(8)} and read[absent].records == frozenset()

    # -- secrets ----------------------------------------------------------------

    def test_repr_shows_no_settings(self, backend: Backend) -> None:
        text = repr(backend.provider)
        assert text.startswith("<") and "secret" not in text.lower()
        redacted = str(type(backend.provider).redacted(backend.provider.config))
        for value in self.secret_values:
            assert value not in text and value not in redacted
