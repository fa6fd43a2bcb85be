"""Read what the primary serves while the provider is still writing (issue 14).

A fleet's change goes to an RFC 2136 primary in several UPDATE messages, one after the
other; the primary spends most of a first sync's write signing them, while this
process only waits for each answer.  A provider that writes in steps says which owners
each step committed (:attr:`Provider.committed`); a thread here then reads those owners
from the primary while the provider sends the next step, so that when the write
returns, the primary's signatures (which the secondaries' identical answers reuse) are
already checked and the propagation wait has only the secondaries left to poll.

Nothing here decides anything: the views are what the servers answered after the
commit, handed to the wait (:func:`hostdns.wait_until_served`), which asks again for
any owner whose early view does not show the change.  Only the views of the write's
last step are handed over: an owner of an earlier step may have been changed by
someone else while the later steps went in, so the wait reads those again (their
signatures, already checked here, are not checked again).  A failure in this thread
only costs the head start.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dns.name

from tlsa_manager.dnsview import DnsView
from tlsa_manager.endpoints import Endpoint
from tlsa_manager.errors import ProviderConflict, TlsaManagerError
from tlsa_manager.observations import ServerView
from tlsa_manager.provider import Provider

log = logging.getLogger(__name__)

#: early views by server, then by owner
EarlyViews = dict[Endpoint, dict[dns.name.Name, ServerView]]


class _Reader:
    """The thread that reads each committed step from the servers it was given."""

    def __init__(self, view: DnsView, endpoints: Sequence[Endpoint]) -> None:
        self.view = view
        self.endpoints = list(endpoints)
        self.views: EarlyViews = {e: {} for e in self.endpoints}
        self.steps: queue.SimpleQueue[list[dns.name.Name] | None] = queue.SimpleQueue()
        self.failed = False
        self.thread = threading.Thread(target=self._run, name="early-views", daemon=True)

    def committed(self, owners: Sequence[dns.name.Name]) -> None:
        self.steps.put(list(owners))

    def _run(self) -> None:
        while (owners := self.steps.get()) is not None:
            if self.failed:
                continue
            try:
                for endpoint in self.endpoints:
                    found = self.view.observe_server(endpoint, owners)
                    # only the last step's answers stand: someone else may change an
                    # owner of an earlier step while ours go on (those reads still
                    # checked their signatures, which the wait's read then reuses)
                    self.views[endpoint] = dict(zip(owners, found, strict=True))
            except Exception:  # only the head start is lost: the wait reads everything again
                log.debug("reading the committed owners early failed", exc_info=True)
                self.failed = True


@contextmanager
def early_views(
    provider: Provider, view: DnsView | None, written: list[dns.name.Name] | None = None
) -> Iterator[EarlyViews]:
    """Around a provider's ``apply``: read each step it commits from the primary (the
    provider's own server when it is one of ``view``'s servers), and note the owners each
    step committed in ``written`` (what a write that fails part way did write).  The
    mapping yielded is filled when the block ends; it stays empty for a provider that
    does not write in steps, for a primary the run does not observe, and after a
    failure here."""
    out: EarlyViews = {}
    try:  # only a head start: a server name that does not resolve here must not fail the write
        server = None if view is None else provider.discovery_server()
    except TlsaManagerError:
        server = None
    primaries = (
        []
        if view is None or server is None
        else [e for e in view.endpoints if (e.address, e.port) == (server.address, server.port)]
    )
    reader = _Reader(view, primaries) if primaries and view is not None else None
    notes = written if written is not None else []

    def committed(owners: Sequence[dns.name.Name]) -> None:
        notes.extend(owners)
        if reader is not None:
            reader.committed(owners)

    if reader is not None:
        reader.thread.start()
    provider.committed = committed
    abandon = False
    try:
        yield out
    except ProviderConflict:
        raise  # the primary answers: the read in hand ends at once, and the views serve
    except BaseException:
        # The write failed (the primary may have stopped answering): its error must not
        # wait for a read of that primary to time out; the thread is a daemon and its
        # answers are dropped.
        abandon = True
        raise
    finally:
        provider.committed = None
        if reader is not None:
            reader.failed = reader.failed or abandon
            reader.steps.put(None)
            if not abandon:
                reader.thread.join()
            if not reader.failed:
                out.update(reader.views)
