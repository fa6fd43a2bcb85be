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

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update

from tlsa_manager import provider_settings as shared
from tlsa_manager import wire
from tlsa_manager.durations import positive_seconds
from tlsa_manager.endpoints import Endpoint, ask_many, parse_endpoint, unreachable, zone_of_reply
from tlsa_manager.errors import ConfigError, ProviderConflict, ProviderError, UsageError
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
        for owner, response in zip(owners, answers, strict=True):
            if isinstance(response, Exception):
                raise self._unreachable(response) from None
            rcode = dns.rcode.Rcode(response.rcode)
            if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or not response.authoritative:
                raise ProviderError(
                    f"{self.endpoint} did not answer authoritatively for {owner} "
                    f"({dns.rcode.to_text(rcode)})",
                    "point server at the zone's primary",
                )
            self._learn_zone(owner, response)
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
        return out

    def build_update(self, zone: dns.name.Name, changes: Sequence[OwnerChange]) -> dns.update.UpdateMessage:
        update = dns.update.UpdateMessage(
            zone, keyring=self._keyring, keyname=self._keyname, keyalgorithm=self._algorithm
        )
        for change in changes:
            if change.expected:
                update.present(change.owner, _rdataset(change.expected, 0))
            else:
                update.absent(change.owner, dns.rdatatype.TLSA)
        for change in changes:
            deletes = change.delete & change.expected
            adds = change.add - change.expected
            if change.ttl_change:
                deletes, adds = change.expected - change.delete, change.result
            if deletes:
                update.delete(change.owner, _rdataset(deletes, 0))
            if adds:
                update.add(change.owner, _rdataset(adds, change.ttl))
        return update

    def apply(self, changeset: ChangeSet) -> None:
        pending = self.pending(changeset)
        zones = self.zones_for([c.owner for c in pending])
        for zone, changes in grouped(pending, lambda c: zones[c.owner]).items():
            for chunk in self.chunks(changes):
                self._send(zone, self.build_update(zone, chunk))

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


def _rdataset(records: frozenset[Tlsa], ttl: int) -> dns.rdataset.Rdataset:
    rdataset = dns.rdataset.Rdataset(dns.rdataclass.IN, dns.rdatatype.TLSA)
    for record in sorted(records):
        rdataset.add(record.to_rdata(), ttl)
    rdataset.ttl = ttl
    return rdataset
