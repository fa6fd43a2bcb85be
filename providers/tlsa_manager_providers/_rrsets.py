"""Shared pieces of the providers whose API writes whole RRsets (Route 53, deSEC, Hetzner).

These services have no "add one record" with a guard: a write replaces the owner's
whole TLSA RRset.  So every one of them reads the owner right before writing, decides
from what it found (:func:`target`), and writes the complete new set.  The helpers
here are that decision, parsing the text a service hands back (it may have changed
hex case or spacing), and the TTL floor check.  The zone walk is
:func:`tlsa_manager.endpoints.enclosing`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import dns.name

from tlsa_manager.errors import ProviderError, TlsaManagerError
from tlsa_manager.provider import ChangeSet, OwnerChange, Provider, RRset, conflict, grouped
from tlsa_manager.records import Tlsa

#: the largest TTL DNS has (RFC 2181 §8): the ceiling of a service that sets no lower one
MAX_TTL = 2**31 - 1


def parse_values(service: str, owner: dns.name.Name, values: Iterable[str]) -> frozenset[Tlsa]:
    """TLSA records from a service's presentation strings: any hex case, hex split by spaces
    (deSEC and Hetzner hand back dnspython's canonical form, chunked and lower-case)."""
    out = set()
    for value in values:
        try:
            out.add(Tlsa.from_text(" ".join(str(value).split())))
        except TlsaManagerError:
            raise ProviderError(
                f"{service} holds a TLSA record at {owner} that is not valid: {str(value)[:60]!r}",
                "fix or remove it in the provider's console",
            ) from None
    return frozenset(out)


def presentation(records: Iterable[Tlsa]) -> list[str]:
    """What we send: lower-case hex in one piece, sorted (a stable request body)."""
    return sorted(r.to_text() for r in records)


def target(change: OwnerChange, found: frozenset[Tlsa], found_ttl: int | None) -> frozenset[Tlsa] | None:
    """The whole RRset to write at ``change.owner``, or None when it is already there.

    Raises the compare-and-swap conflict when the owner holds something else than the
    plan expected (someone edited it since it was read)."""
    done_ttl = not change.ttl_change or found_ttl == change.ttl
    if found == change.result and done_ttl:
        return None
    if found != change.expected:
        raise conflict(change.owner, change.expected, found)
    return change.result


def check_ttl(service: str, owner: dns.name.Name, ttl: int, minimum: int, maximum: int) -> None:
    """Refuse a TTL the service would reject or rewrite.  Never round up in silence: the
    planner times its gates by the TTL it asked for, a longer one would make them early."""
    if ttl < minimum:
        raise ProviderError(
            f"{service} does not accept TTL {ttl} at {owner} (its minimum there is {minimum})",
            f"set ttl = {minimum} or more for this host; nothing was changed",
        )
    if ttl > maximum:
        raise ProviderError(
            f"{service} does not accept TTL {ttl} at {owner} (its maximum is {maximum})",
            f"set ttl = {maximum} or less for this host; nothing was changed",
        )


def relative(owner: dns.name.Name, zone: str) -> str:
    """The owner's name inside ``zone`` (``_25._tcp.mx``); "" or "@" are never TLSA owners."""
    origin = dns.name.from_text(zone)
    return owner.relativize(origin).to_text().lower()


class ZonedProvider(Provider):
    """A provider whose API lists and writes whole TLSA RRsets per zone (deSEC, Route 53):
    one listing per zone for a read; for a write, every TTL checked before anything is
    sent, then one :meth:`apply_zone` per zone (which reads again right before writing)."""

    #: the service's name in messages ("deSEC", "Route 53")
    service: ClassVar[str]

    @abc.abstractmethod
    def zone_key(self, owner: dns.name.Name) -> str:
        """The zone (name or id) holding ``owner``: what one listing and one write cover."""

    @abc.abstractmethod
    def ttl_range(self, owner: dns.name.Name) -> tuple[int, int]:
        """The smallest and largest TTL the service takes at ``owner``."""

    @abc.abstractmethod
    def listing(self, zone: str, owners: Sequence[dns.name.Name]) -> Mapping[dns.name.Name, Any]:
        """The service's raw TLSA RRset of each of ``owners`` that has one."""

    @abc.abstractmethod
    def parsed(self, owner: dns.name.Name, raw: Any) -> RRset:
        """One raw RRset of :meth:`listing` (or None) as an :class:`RRset`."""

    @abc.abstractmethod
    def apply_zone(self, zone: str, changes: Sequence[OwnerChange]) -> None:
        """Write the changes of one zone (each checked by :func:`target` first)."""

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        out = {}
        for zone, group in grouped(owners, self.zone_key).items():
            raw = self.listing(zone, group)
            out.update({owner: self.parsed(owner, raw.get(owner)) for owner in group})
        return out

    def apply(self, changeset: ChangeSet) -> None:
        changeset.check_safe()
        todo = []
        for change in changeset.changes:
            if not change.is_noop:
                check_ttl(self.service, change.owner, change.ttl, *self.ttl_range(change.owner))
                todo.append(change)
        for zone, changes in grouped(todo, lambda c: self.zone_key(c.owner)).items():
            self.apply_zone(zone, changes)

    def applied(self, zone: str, changes: Sequence[OwnerChange]) -> bool:
        """Read again after a write whose outcome is unknown: is every change there?"""
        after = self.listing(zone, [c.owner for c in changes])
        return all(self.parsed(c.owner, after.get(c.owner)).records == c.result for c in changes)
