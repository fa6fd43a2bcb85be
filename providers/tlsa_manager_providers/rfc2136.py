"""RFC 2136 dynamic update with TSIG: one compare-and-swap UPDATE per zone.

The UPDATE carries, for every owner it touches, a value-dependent prerequisite on
the exact RRset read before (or "RRset does not exist"), then single-record
deletions (class NONE) and additions at the RRset's TTL (dane-rules E1).  It goes to
the primary over TCP, so the response code is reliable (RFC 2136 §7.8), signed with
TSIG (hmac-sha256 unless told otherwise).  NXRRSET/YXRRSET mean someone changed the
RRset: a conflict, re-read and re-plan.  Every other failure is one line naming the
cause; the TSIG secret never appears in any of them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.renderer
import dns.tsig
import dns.update

from tlsa_manager import provider_settings as shared
from tlsa_manager import wire
from tlsa_manager.durations import positive_seconds
from tlsa_manager.endpoints import Endpoint, ask_many, parse_endpoint, unreachable, zone_of_reply
from tlsa_manager.errors import (
    ConfigError,
    OwnersRefused,
    ProviderConflict,
    ProviderError,
    TlsaManagerError,
    UnsafeError,
    UsageError,
)
from tlsa_manager.provider import Capabilities, ChangeSet, OwnerChange, Provider, RRset, grouped
from tlsa_manager.records import Tlsa
from tlsa_manager_providers import _tsig as tsig
from tlsa_manager_providers._tsig import read_bind_key_file

__all__ = ["Rfc2136Provider", "read_bind_key_file"]

MESSAGE_BUDGET = 60_000  # bytes: a DNS message is at most 65,535; TSIG and headers need the rest
_CONFLICT_RCODES = {dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN}


class Rfc2136Provider(Provider):
    """Dynamic DNS update (RFC 2136) signed with TSIG (RFC 8945)."""

    name = "rfc2136"
    capabilities = Capabilities(atomic=True, compare_and_swap=True, eventual_propagation=True)
    #: an UPDATE applies whole under its prerequisites, and records carry no marks
    holds_what_it_wrote = True
    settings: ClassVar[Mapping[str, str]] = {
        "server": "primary to send updates to, host[:port] (default port 53)",
        **shared.zone("by SOA"),
        **tsig.SETTINGS,
        **shared.timeout(10, per="query"),
        **shared.nameservers("default: the zone's NS"),
    }
    secret_settings: ClassVar[Mapping[str, str]] = tsig.SECRET_SETTINGS

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        if not config.get("server"):
            raise ConfigError(
                f"provider {config.get('name', self.name)}: no server", 'add server = "ns1.example.com"'
            )
        self.endpoint: Endpoint = parse_endpoint(str(config["server"]))
        self.timeout = positive_seconds(config.get("timeout", 10), "rfc2136 timeout")
        self._keyring, self._keyname, self._algorithm = tsig.load_key(config)
        self._zones: dict[dns.name.Name, dns.name.Name] = {}

    # -- zones -------------------------------------------------------------------

    def zone_for(self, owner: dns.name.Name) -> dns.name.Name:
        """The zone apex holding ``owner``, from the configuration or by asking the server for SOA."""
        return self.zones_for([owner])[owner]

    def zones_for(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, dns.name.Name]:
        """Zone apexes of many owners: configured, learnt from a read, or one SOA query
        per owner not yet known, all pipelined on one connection."""
        if self.config.get("zone"):
            zone = dns.name.from_text(str(self.config["zone"]))
            for owner in owners:
                if not owner.is_subdomain(zone):
                    raise ConfigError(f"{owner} is not inside the configured zone {zone}", "fix zone = ...")
            return {owner: zone for owner in owners}
        unknown = list(dict.fromkeys(o for o in owners if o not in self._zones))
        if unknown:
            self.requests += len(unknown)
            answers = ask_many(
                self.endpoint, [(o, dns.rdatatype.SOA) for o in unknown], self.timeout, dnssec=False
            )
            for owner, response in zip(unknown, answers, strict=True):
                if isinstance(response, Exception):
                    raise self._unreachable(response) from None
                if not self._learn_zone(owner, response):
                    raise ProviderError(
                        f"{self.endpoint} is not authoritative for {owner} (no SOA in its answer)",
                        "point server at the primary of that zone, or set zone = ...",
                    )
        return {owner: self._zones[owner] for owner in owners}

    def _learn_zone(self, owner: dns.name.Name, response: wire.Reply) -> bool:
        """Note the zone an authoritative answer names (an SOA in answer or authority)."""
        apex = zone_of_reply(owner, response)
        if apex is not None:
            self._zones[owner] = apex
        return apex is not None

    def _unreachable(self, exc: BaseException) -> ProviderError:
        return unreachable(self.endpoint, exc, self.timeout)

    # -- Provider ---------------------------------------------------------------

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        """The RRsets at the primary, every owner on one pipelined TCP connection."""
        self.requests += len(owners)
        answers = ask_many(
            self.endpoint, [(o, dns.rdatatype.TLSA) for o in owners], self.timeout, dnssec=False
        )
        out = {}
        refused: dict[dns.name.Name, TlsaManagerError] = {}
        for owner, response in zip(owners, answers, strict=True):
            if isinstance(response, Exception):
                raise self._unreachable(response) from None
            if response.rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or not response.authoritative:
                raise ProviderError(
                    f"{self.endpoint} did not answer authoritatively for {owner} "
                    f"({dns.rcode.to_text(dns.rcode.Rcode(response.rcode))})",
                    "point server at the zone's primary",
                )
            self._learn_zone(owner, response)
            alias = response.records(wire.labels(owner), wire.TYPE_CNAME)
            if alias:
                refused[owner] = _alias_refused(owner, response, alias[0])
                continue
            found = response.records(wire.labels(owner), wire.TYPE_TLSA)
            if not found:
                out[owner] = RRset(owner)
                continue
            try:
                records = frozenset(Tlsa.from_wire(r.rdata) for r in found)
            except UsageError as exc:
                raise ProviderError(
                    f"{self.endpoint} serves a TLSA record at {owner} that does not parse ({exc.message})",
                    "fix or remove that record at the server",
                ) from None
            out[owner] = RRset(owner, records, min(r.ttl for r in found))
        if refused:
            raise OwnersRefused(refused, out)
        return out

    def build_update(self, zone: dns.name.Name, changes: Sequence[OwnerChange]) -> dns.update.UpdateMessage:
        """One TSIG-signed UPDATE of ``changes``: first every owner's prerequisite (its
        RRset as read, or no RRset), then per owner its deletions and additions."""
        update = _WireUpdate(zone, keyring=self._keyring, keyname=self._keyname, keyalgorithm=self._algorithm)
        update.body, update.body_counts = _update_sections(zone, changes)
        return update

    def apply(self, changeset: ChangeSet) -> None:
        pending = self.pending(changeset)
        zones = self.zones_for([c.owner for c in pending])
        for zone, changes in grouped(pending, lambda c: zones[c.owner]).items():
            for chunk in self.chunks(changes):
                self._send(zone, self.build_update(zone, chunk))
                if self.committed is not None:
                    self.committed([c.owner for c in chunk])

    @staticmethod
    def chunks(changes: Sequence[OwnerChange], limit: int = MESSAGE_BUDGET) -> list[list[OwnerChange]]:
        """Split into the fewest UPDATEs that fit a DNS message (64 KiB over TCP).

        Each owner's change stays whole in one message with its own prerequisite, so it
        is still all-or-nothing per owner name; one zone with up to a few hundred owner
        names always goes in a single UPDATE.
        """
        out: list[list[OwnerChange]] = [[]]
        size = 0
        for change in changes:
            cost = _estimate(change)
            if out[-1] and size + cost > limit:
                out.append([])
                size = 0
            out[-1].append(change)
            size += cost
        return out

    def _send(self, zone: dns.name.Name, update: dns.update.UpdateMessage) -> None:
        self.requests += 1
        try:
            response = dns.query.tcp(
                update, self.endpoint.address, timeout=self.timeout, port=self.endpoint.port
            )
        except dns.tsig.PeerBadKey:
            raise ProviderError(
                f"{self.endpoint} does not know TSIG key {self._keyname} (BADKEY)",
                "check the key name and that the server has the key",
            ) from None
        except dns.tsig.PeerBadSignature:
            raise ProviderError(
                f"{self.endpoint} rejected the TSIG signature of key {self._keyname} (BADSIG)",
                "the secret differs from the server's; copy the key file again",
            ) from None
        except dns.tsig.PeerBadTime:
            raise ProviderError(
                f"{self.endpoint} says the clocks differ too much (BADTIME)",
                "synchronise the clock (NTP) on this host or the server",
            ) from None
        except dns.tsig.PeerError as exc:
            raise ProviderError(
                f"{self.endpoint} rejected the TSIG signature ({type(exc).__name__})", "check the TSIG key"
            ) from None
        except (dns.exception.Timeout, OSError) as exc:
            error = self._unreachable(exc)
            raise ProviderError(
                error.message + "; the update may or may not have been applied",
                "run again: tlsa-manager re-reads before it changes anything",
            ) from None
        except dns.exception.DNSException as exc:
            raise ProviderError(
                f"bad answer from {self.endpoint} to the update ({type(exc).__name__})",
                "check the server's logs",
            ) from None
        self.writes += 1
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            return
        text = dns.rcode.to_text(rcode)
        if rcode in _CONFLICT_RCODES:
            raise ProviderConflict(
                f"the TLSA RRset in {zone} changed since it was read ({text})",
                "run again to re-read and re-plan",
            )
        hints = {
            dns.rcode.REFUSED: (
                "the server refused the update (REFUSED)",
                "allow this TSIG key to update TLSA in update-policy/allow-update",
            ),
            dns.rcode.NOTAUTH: (
                f"{self.endpoint} is not authoritative for {zone} or did not accept the key (NOTAUTH)",
                "send updates to the zone's primary with a key it knows",
            ),
            dns.rcode.NOTZONE: (
                f"a name is outside the zone {zone} (NOTZONE)",
                "set zone = ... to the right apex",
            ),
            dns.rcode.SERVFAIL: (
                "the server failed to apply the update (SERVFAIL)",
                "check its logs; run again (it re-reads first)",
            ),
            dns.rcode.NOTIMP: ("the server does not support dynamic update (NOTIMP)", "use another provider"),
            dns.rcode.FORMERR: ("the server could not parse the update (FORMERR)", "please report this"),
        }
        message, hint = hints.get(rcode, (f"the update failed ({text})", "check the server's logs"))
        raise ProviderError(message, hint)

    def discovery_server(self) -> Endpoint:
        """The primary knows the zone's NS and their addresses."""
        return self.endpoint


def _estimate(change: OwnerChange) -> int:
    """Wire bytes a change adds to an UPDATE: the owner name once (later ones are 2-byte
    pointers), then per resource record 2 + 10 bytes of header and its RDATA."""
    rrs = (1 if not change.expected else len(change.expected)) + len(change.add) + len(change.delete)
    if change.ttl_change:
        rrs += len(change.expected) + len(change.result)
    data = sum(3 + len(r.data) for r in change.expected | change.add | change.delete | change.result)
    return len(change.owner.to_wire() or b"") + 12 * rrs + data * 2


class _WireUpdate(dns.update.UpdateMessage):
    """An UPDATE whose zone, prerequisite and update sections are written as bytes by
    :func:`_update_sections`; dnspython adds and checks the TSIG as for any message.

    A fleet's change set is thousands of records: rendering them through dnspython's
    rdatasets and name compression took 0.4 s of CPU per 1,000 owners (issue 14)."""

    body: bytes = b""
    body_counts: tuple[int, int, int] = (0, 0, 0)

    def to_wire(
        self,
        origin: dns.name.Name | None = None,
        max_size: int = 0,
        multi: bool = False,
        tsig_ctx: Any | None = None,
        prepend_length: bool = False,
        prefer_truncation: bool = False,
        **kw: Any,
    ) -> bytes:
        renderer: Any = dns.renderer.Renderer(self.id, self.flags, 65535)  # type: ignore[no-untyped-call]
        renderer.output.write(self.body)
        renderer.counts[:3] = self.body_counts
        renderer.section = dns.renderer.AUTHORITY
        renderer.write_header()
        tsig: Any = self.tsig
        if tsig is not None:  # as dns.message.Message.to_wire signs
            if self.want_tsig_sign:
                sign: Any = dns.tsig.sign
                signed, _ctx = sign(
                    renderer.get_wire(), self.keyring, tsig[0], int(time.time()), self.request_mac
                )
                tsig.clear()
                tsig.add(signed)
            renderer.add_rrset(dns.renderer.ADDITIONAL, tsig)
            renderer.write_header()
        message: bytes = renderer.get_wire()
        self.wire = message
        return len(message).to_bytes(2, "big") + message if prepend_length else message


_TLSA = dns.rdatatype.TLSA.to_bytes(2, "big")
_IN = dns.rdataclass.IN.to_bytes(2, "big")
_NONE = dns.rdataclass.NONE.to_bytes(2, "big")
_HEADER = 12  # bytes before the zone section: the zone name is at offset 12


def _update_sections(
    zone: dns.name.Name, changes: Sequence[OwnerChange]
) -> tuple[bytes, tuple[int, int, int]]:
    """The zone, prerequisite and update sections of an UPDATE (RFC 2136 §2.3-2.5) and
    their record counts: value-dependent prerequisites (§2.4.2) or "RRset does not
    exist" (§2.4.3), deletions of single records (class NONE, §2.5.4), additions at
    the change's TTL (dane-rules E1).  Names are compressed as dnspython does: an
    owner under the zone is its own labels and a pointer to the zone's name, and a
    later mention of an owner points at its first one (offsets below 16 KiB)."""
    out = bytearray(zone.to_wire() or b"")
    out += dns.rdatatype.SOA.to_bytes(2, "big") + _IN
    at_zone = (0xC000 | _HEADER).to_bytes(2, "big")
    seen: dict[dns.name.Name, bytes] = {}

    def name(owner: dns.name.Name) -> bytes:
        if owner in seen:
            return seen[owner]
        if owner.is_subdomain(zone) and owner != zone:
            own = owner.labels[: len(owner.labels) - len(zone.labels)]
            text = b"".join(len(label).to_bytes(1, "big") + label for label in own) + at_zone
        else:
            text = owner.to_wire() or b""
        position = _HEADER + len(out)
        if position < 0x3FFF:
            seen[owner] = (0xC000 | position).to_bytes(2, "big")
        return text

    def record(owner: dns.name.Name, rdclass: bytes, ttl: int, tlsa: Tlsa | None) -> None:
        rdata = b"" if tlsa is None else bytes((tlsa.usage, tlsa.selector, tlsa.mtype)) + tlsa.data
        out.extend(name(owner) + _TLSA + rdclass + ttl.to_bytes(4, "big") + len(rdata).to_bytes(2, "big"))
        out.extend(rdata)

    prerequisites = updates = 0
    for change in changes:
        if change.expected:
            for tlsa in sorted(change.expected):
                record(change.owner, _IN, 0, tlsa)
                prerequisites += 1
        else:
            record(change.owner, _NONE, 0, None)
            prerequisites += 1
    for change in changes:
        deletes = change.delete & change.expected
        adds = change.add - change.expected
        if change.ttl_change:
            deletes, adds = change.expected - change.delete, change.result
        for tlsa in sorted(deletes):
            record(change.owner, _NONE, 0, tlsa)
            updates += 1
        for tlsa in sorted(adds):
            record(change.owner, _IN, change.ttl, tlsa)
            updates += 1
    return bytes(out), (1, prerequisites, updates)


def _alias_refused(owner: dns.name.Name, response: wire.Reply, alias: wire.Record) -> UnsafeError:
    """A CNAME at the TLSA owner: senders follow it (RFC 7672 §2.2.3) and the primary
    drops records added beside it (RFC 2136 §3.4.2.2), so a write there would report
    records that nobody serves."""
    try:
        target: object = dns.name.from_wire(response.wire, alias.offset)[0]
    except dns.exception.DNSException:
        target = "a name that does not parse"
    return UnsafeError(
        f"{owner} is a CNAME to {target}: senders read the TLSA records there, and the "
        "primary ignores records added beside a CNAME",
        f"remove the CNAME, or configure the host whose owner is {target}",
    )
