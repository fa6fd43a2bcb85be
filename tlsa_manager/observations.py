"""What every authoritative server was seen serving, and when (pure).

The deploy gate of dane-rules.md F6 starts at ``t_sync``: the first time *every*
authoritative server was observed serving an RRset that matches the chain to be
deployed, for every record kind present, without a break since.  Publication time
does not count; a guess does not count.  This module keeps the observations as a
compact history (identical consecutive observations merge) and answers t_sync, the
largest TTL seen recently (F3) and whether the name was absent (F4).

Unknown history means "not yet seen": an empty history never opens a gate early.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from operator import attrgetter, itemgetter

from tlsa_manager.facts import ChainFacts
from tlsa_manager.records import Tlsa


@dataclass(frozen=True)
class ServerView:
    """One authoritative server's answer: records (empty = no TLSA), or None = no usable answer."""

    server: str
    records: frozenset[Tlsa] | None
    ttl: int | None = None
    error: str | None = None
    #: not an authoritative server but the provider's own copy (no server could be asked)
    provider_copy: bool = False
    #: the latest RRSIG inception the answer carried (the signer's clock, epoch seconds):
    #: later than this host's clock means the clock is behind (tlsa_manager.clock)
    signed_at: float | None = None

    @property
    def answered(self) -> bool:
        return self.records is not None


@dataclass(frozen=True)
class Observation:
    """The same answers from every server between ``first`` and ``last`` (epoch seconds)."""

    first: float
    last: float
    views: tuple[ServerView, ...]

    def same_answers(self, views: Sequence[ServerView]) -> bool:
        return _key(self.views) == _key(views)

    @property
    def servers(self) -> frozenset[str]:
        return frozenset(v.server for v in self.views)


_FIRST, _SERVER = itemgetter(0), attrgetter("server")  # sort keys without a Python call per item


def _key(views: Iterable[ServerView]) -> tuple[tuple[str, frozenset[Tlsa] | None, int | None], ...]:
    return tuple(sorted(((v.server, v.records, v.ttl) for v in views), key=_FIRST))


@dataclass(frozen=True)
class History:
    """Observations of one owner name, oldest first.

    ``since`` is when this history began (the first observation this ledger made);
    ``blind`` says that TLSA records were already served then, so whatever was served
    before ``since`` (and with which TTL) is unknown: gates assume the TTL ceiling for
    it.  A lost ledger or a detected clock step starts a new, blind history.
    """

    entries: tuple[Observation, ...] = ()
    since: float | None = None
    blind: bool = False

    def observe(self, now: float, views: Sequence[ServerView], slack: float = 300.0) -> History:
        """Add an observation at ``now``; merge with the last one if nothing changed; prune."""
        views = tuple(sorted(views, key=_SERVER))
        entries = list(self.entries)
        if entries and entries[-1].same_answers(views) and now >= entries[-1].last:
            entries[-1] = Observation(entries[-1].first, now, entries[-1].views)  # not replace(): slower
        else:
            entries.append(Observation(now, now, views))
        since, blind = self.since, self.blind
        if since is None:
            # Only "no TLSA" from every server proves that nothing else was cacheable.
            since, blind = now, not all(v.records is not None and not v.records for v in views)
        return History(tuple(entries), since, blind).pruned(now, slack)

    def pruned(self, now: float, slack: float = 300.0) -> History:
        """Drop observations too old to matter.

        An observation's state ends when the *next* observation first saw something
        else, not at its own last sighting: between two runs the old state (a stale
        secondary's long TTL, say) may have been served until just before the change
        was seen.  A state is forgotten once 2 x the largest TTL + slack + 1 h have
        passed since then, so every TTL counts until no cache can hold it any more.
        Pruning only ever makes t_sync later or forgets versions whose cached copies
        have long expired, so it cannot open a gate early.
        """
        if len(self.entries) <= 1:
            return self
        keep_after = now - (2 * self.max_ttl() + slack + 3600)
        entries = self.entries
        kept = [e for e, nxt in pairwise(entries) if nxt.first >= keep_after]
        return History((*kept, entries[-1]), self.since, self.blind)

    def latest(self) -> Observation | None:
        return self.entries[-1] if self.entries else None

    def max_ttl(self) -> int:
        """The largest TTL any server served within the kept history (F3)."""
        return max((v.ttl or 0 for e in self.entries for v in e.views), default=0)

    def was_absent(self) -> bool:
        """True if some server recently had no TLSA here: negative caching applies (F4)."""
        return any(v.records is not None and not v.records for e in self.entries for v in e.views)

    def t_sync(self, chain: ChainFacts, servers: frozenset[str]) -> float | None:
        """First time of the current unbroken run in which every server matched ``chain``.

        None when the latest observation does not show all of ``servers`` serving a
        matching RRset (a lagging or unreachable server keeps the clock stopped).
        """
        start = None
        for entry in reversed(self.entries):
            if not servers or not servers <= entry.servers or not _all_match(entry, chain, servers):
                break
            start = entry.first
        return start

    def lagging(self, chain: ChainFacts, servers: frozenset[str]) -> list[str]:
        """Servers whose latest answer does not (yet) match ``chain``, with why."""
        latest = self.latest()
        if latest is None:
            return sorted(servers)
        by_server = {v.server: v for v in latest.views}
        out = []
        for server in sorted(servers):
            view = by_server.get(server)
            if view is None or view.records is None:
                why = view.error if view is not None and view.error else "no answer"
                out.append(f"{server} ({why})")
            elif not view.records or not chain.covered_by(view.records):
                out.append(f"{server} (old records)")
        return out


def _all_match(entry: Observation, chain: ChainFacts, servers: frozenset[str]) -> bool:
    for view in entry.views:
        if view.server not in servers:
            continue
        if view.records is None or not view.records or not chain.covered_by(view.records):
            return False
    return True
