"""The propagation wait's threads (hostdns.wait_until_served): one per server."""

from __future__ import annotations

import time
from collections.abc import Sequence

import dns.name
import pytest

from tlsa_manager.dnsview import DnsView
from tlsa_manager.endpoints import parse_endpoint
from tlsa_manager.hostdns import wait_until_served
from tlsa_manager.observations import ServerView
from tlsa_manager.records import Tlsa

RECORD = Tlsa.from_text("3 1 1 " + "ab" * 32)


class BrokenSecondary(DnsView):
    """The primary never serves the change; reading the secondary fails with a bug's
    exception (not a network error, which would be a view with an error)."""

    def observe_server(self, endpoint: object, owners: Sequence[dns.name.Name]) -> list[ServerView]:
        if endpoint == self.endpoints[1]:
            raise RuntimeError("a bug in reading the secondary")
        return [ServerView("primary", frozenset(), None) for _ in owners]


def test_a_failure_reading_one_server_ends_the_wait_at_once() -> None:
    """Before, the failure surfaced only when the other server's thread gave up: at the
    propagation timeout (300 s by default), with nothing to show for the wait."""
    view = BrokenSecondary([parse_endpoint("127.0.0.1:1"), parse_endpoint("127.0.0.1:2")])
    owners = [dns.name.from_text(f"_25._tcp.mx{i}.example.com.") for i in range(3)]
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="bug in reading the secondary"):
        wait_until_served(view, dict.fromkeys(owners, frozenset({RECORD})), timeout=30.0)
    assert time.monotonic() - started < 5.0
