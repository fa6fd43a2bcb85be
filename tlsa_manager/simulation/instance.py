"""One machine behind the MX name: its MTA, certificate files, ledger and clock.

What the instance knows and holds; the engine's ports over it are in ``ports.py`` and
its runs and events in ``world.py``.  The DNS and the true clock are shared by every
instance (``dns.py``).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from tlsa_manager.engine import HostSettings
from tlsa_manager.facts import CertFacts, ChainFacts
from tlsa_manager.ledger import LedgerData
from tlsa_manager.planner import DEFAULT_TTL_CEILING
from tlsa_manager.policy import HostPolicy, IssuerFacts
from tlsa_manager.records import Tlsa
from tlsa_manager.simulation.dns import HOST, OWNER, Dns, Version, Violation, dur

if TYPE_CHECKING:
    from tlsa_manager.simulation.world import World


class Instance:
    """The state of one instance, and the helpers every part of it uses."""

    def __init__(
        self,
        issuers: Sequence[IssuerFacts],
        *,
        servers: dict[str, float] | None = None,
        ttl: int = 3600,
        negative_ttl: int = 300,
        slack: float = 300.0,
        policy: HostPolicy | None = None,
        start: float = 1_790_000_000.0,
        seed: int = 0,
        key_types: Sequence[str] = ("ecdsa",),
        initial_issuers: dict[str, str] | None = None,
        ttl_ceiling: int = DEFAULT_TTL_CEILING,
        skew: float = 0.0,
        mta_other: bool = False,
        can_probe: bool = True,
        unobserved: bool = False,
        propagation_delay: float | None = None,
        signer_backdate: float | None = None,
        dns: Dns | None = None,
        name: str = "",
    ) -> None:
        self.rng = random.Random(seed)
        self.issuers = {i.name: i for i in issuers}
        self.dns = dns or Dns(start, ttl, servers or {"ns1": 0, "ns2": 30})
        self.dns.worlds.append(cast("World", self))  # every Instance is a World
        self.dns.resolver_cap = max(self.dns.resolver_cap if dns else 0, ttl_ceiling)
        # The shared findings, under the names callers read them by (the same lists).
        self.t0 = self.dns.t0
        self.violations: list[Violation] = self.dns.violations
        self.deferrals: list[Violation] = self.dns.deferrals
        self.over_budget: list[tuple[float, int]] = self.dns.over_budget
        self.timeline: list[str] = self.dns.timeline
        #: the instance's name: prefixes its chains' labels, marks its records
        self.name = name
        self.ttl = ttl
        self.owner = OWNER
        self.settings = HostSettings(
            HOST,
            (self.owner,),
            policy or HostPolicy(),
            tuple(issuers),
            (),
            negative_ttl,
            ttl,
            slack,
            ttl_ceiling,
            propagation_delay,
        )
        #: no authoritative server can be asked: the engine sees only the provider's copy
        self.unobserved = unobserved
        self.live: dict[str, ChainFacts] = {}
        self.staged: dict[str, ChainFacts] = {}
        self.next_keys: dict[str, ChainFacts] = {}
        self.counter = itertools.count(1)
        initial = initial_issuers or {}
        for kt in key_types:
            self.live[kt] = self.new_chain(kt, initial.get(kt) or self.default_issuer(kt), new_key=True)
        #: what the MTA presents: the live files as of its last reload
        self.serving: dict[str, ChainFacts] = dict(self.live)
        #: the MTA's own configuration points at other files than tlsa-manager's
        #: ``cert``: it presents these chains whatever is deployed, until fixed
        self.mta_other: dict[str, ChainFacts] = {}
        if mta_other:
            for kt in key_types:
                self.mta_other[kt] = self.new_chain(kt, self.default_issuer(kt), new_key=True)
            self.serving = dict(self.mta_other)
        #: the MTA ignores reloads (wrong path in its config): the probe sees the old chain
        self.mta_stuck = False
        self.ledger = LedgerData()
        self.saved = LedgerData()
        self.fail_next_apply = False
        self.crash_at: str | None = None
        self.edit_before_apply = False
        self.parallel_next = False
        self.applies = 0
        self.narrate = False
        self.quiet_timer = False
        self.last_timer = ""
        #: the host clock runs ``skew`` seconds off the true time (steps change it)
        self.skew = skew
        self.boot_id = "boot-1"
        #: true time of the last boot (the boot-time clock counts from it)
        self.booted = self.dns.t0
        #: the zone is signed, each RRSIG's inception this long before the signing
        #: (BIND: 3600 s); the engine compares it with the host clock.  None: unsigned
        self.signer_backdate = signer_backdate
        #: the MTA can be probed on its own port (``probe`` configured)
        self.can_probe = can_probe
        #: this instance's MTA gets mail (a peer: once its first records are everywhere)
        self.in_service = len(self.dns.worlds) == 1
        self.synced = False
        #: the last run changed nothing and waits for nothing (see ``World.quiescent``)
        self.settled = False
        #: the provider's marks say only "managed by tlsa-manager", not which instance (the old way)
        self.shared_marks = False
        #: another instance runs a whole sync when this one reaches a checkpoint
        self.interleave: tuple[str, int] | None = None
        self.lose_reply_next = False
        self.partial_next = False
        #: a renewal staged at this checkpoint by something that ignores the lock
        self.race: tuple[str, dict[str, Any]] | None = None
        self.lose_ledger_at: str | None = None

        self.said: set[str] = set()

    # -- the shared DNS, as this instance sees it ------------------------------------

    @property
    def clock(self) -> float:
        """The true time (the host's clock is ``clock + skew``)."""
        return self.dns.clock

    @property
    def primary(self) -> Version:
        return self.dns.primary

    def publish(self, records: frozenset[Tlsa], ttl: int, *, by_tool: bool = True) -> None:
        """A new version at the primary; ``by_tool=False`` for someone else's write (or half
        of a failed one), which the budget check leaves out."""
        self.dns.publish(records, ttl, self.settings.policy.budget, by_tool=by_tool)

    def advance(self, to: float) -> None:
        self.dns.advance(to, self.settings.policy.budget)

    def check(self) -> None:
        self.dns.check(self.settings.policy.budget)

    def sender_verdict(self) -> str:
        return self.dns.sender_verdict(self)

    def state_line(self) -> str:
        return self.dns.state_line(self)

    # -- helpers -------------------------------------------------------------

    def default_issuer(self, key_type: str) -> str:
        return sorted(n for n, i in self.issuers.items() if i.key_type == key_type and i.status == "active")[
            0
        ]

    def _bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def new_chain(
        self, key_type: str, issuer: str, *, new_key: bool, old: ChainFacts | None = None
    ) -> ChainFacts:
        n = next(self.counter)
        if not new_key and old is not None:
            spki = old.leaf.spki_der
        elif new_key and key_type in self.next_keys:
            spki = self.next_keys.pop(key_type).leaf.spki_der
        else:
            spki = b"SPKI-" + key_type.encode() + self._bytes(24)
        ca = (
            self.issuers[issuer].certs[0]
            if issuer in self.issuers
            else CertFacts(self._bytes(40), self._bytes(60), issuer)
        )
        leaf = CertFacts(spki, b"CERT" + self._bytes(40), HOST)
        return ChainFacts(f"{self.name}{key_type}#{n}({issuer})", leaf, key_type, (ca,), issuer_name=issuer)

    def log(self, text: str) -> None:
        if self.quiet_timer and text.startswith("timer:"):
            if text.endswith("nothing to do") or text == self.last_timer:
                return
            self.last_timer = text
        self.timeline.append(f"T+{dur(self.clock - self.t0):>9}  {text}")
        if self.narrate:
            self.timeline.append(f"{'':13}{self.state_line()}")

    def log_once(self, text: str) -> None:
        """Log a line only the first time (a stuck MTA says the same every timer run)."""
        if text not in self.said:
            self.said.add(text)
            self.log(text)

    def presentable(self) -> list[ChainFacts]:
        """What the MTA presents now, and what it presents after any restart (the files).

        A machine added behind the MX name gets mail only once every RRset a resolver
        may hold covers it (the operator's part when adding a machine; see ``Dns.check``).
        """
        if not self.in_service:
            return []
        chains = {c.label: c for c in self.serving.values()}
        chains.update((c.label, c) for c in self.live.values())
        return list(chains.values())
