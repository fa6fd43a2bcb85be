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

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
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
import dns.tsigkeyring
import dns.update

from tlsa_manager.durations import positive_seconds
from tlsa_manager.endpoints import Endpoint, parse_endpoint, unreachable, zone_apex
from tlsa_manager.errors import ConfigError, ProviderConflict, ProviderError
from tlsa_manager.fsutil import read_regular
from tlsa_manager.provider import Capabilities, ChangeSet, OwnerChange, Provider, RRset, grouped
from tlsa_manager.records import Tlsa
from tlsa_manager.secrets import SECRET_LIMIT, read_secret, warn_if_readable

_KEY_BLOCK = re.compile(r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{(?P<body>[^}]*)\}', re.IGNORECASE | re.DOTALL)
_ALGO = re.compile(r"algorithm\s+\"?(?P<algo>[\w.-]+)\"?\s*;", re.IGNORECASE)
_SECRET = re.compile(r'secret\s+"(?P<secret>[^"]+)"\s*;', re.IGNORECASE)
MESSAGE_BUDGET = 60_000  # bytes: a DNS message is at most 65,535; TSIG and headers need the rest
_CONFLICT_RCODES = {dns.rcode.NXRRSET, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN}


def read_bind_key_file(path: Path, wanted: str | None = None) -> tuple[str, str, str]:
    """(name, algorithm, secret) from a BIND key file such as tsig-keygen writes."""
    raw = read_regular(path, limit=SECRET_LIMIT, error=ConfigError, what="TSIG key file")
    warn_if_readable(path, "TSIG key file")
    text = raw.decode("utf-8", "replace")
    for match in _KEY_BLOCK.finditer(text):
        name, body = match.group("name"), match.group("body")
        if wanted and name.rstrip(".") != wanted.rstrip("."):
            continue
        algo = _ALGO.search(body)
        secret = _SECRET.search(body)
        if not secret:
            raise ConfigError(
                f"{path}: key {name!r} has no secret", 'write secret "BASE64"; in the key block'
            )
        return name, algo.group("algo") if algo else "hmac-sha256", secret.group("secret")
    raise ConfigError(
        f"{path}: no key block{f' named {wanted!r}' if wanted else ''}",
        'expected key "NAME" { algorithm hmac-sha256; secret "..."; };',
    )


class Rfc2136Provider(Provider):
    """Dynamic DNS update (RFC 2136) signed with TSIG (RFC 8945)."""

    name = "rfc2136"
    capabilities = Capabilities(atomic=True, compare_and_swap=True, eventual_propagation=True)
    settings: ClassVar[Mapping[str, str]] = {
        "server": "primary to send updates to, host[:port] (default port 53)",
        "zone": "zone apex; found by SOA when left out",
        "tsig_key_file": "BIND key file (tsig-keygen output)",
        "tsig_name": "TSIG key name (with tsig_secret_file or tsig_secret_env)",
        "tsig_secret_file": "file holding the base64 secret",
        "tsig_secret_env": "environment variable holding the base64 secret",
        "tsig_algorithm": "hmac-sha256 (default), hmac-sha512, ...",
        "timeout": "seconds per query (default 10)",
        "nameservers": "authoritative servers to poll, host:port list (default: the zone's NS)",
    }
    secret_settings: ClassVar[Mapping[str, str]] = {"tsig_secret": "the TSIG key's base64 secret"}

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        if not config.get("server"):
            raise ConfigError(
                f"provider {config.get('name', self.name)}: no server", 'add server = "ns1.example.com"'
            )
        self.endpoint: Endpoint = parse_endpoint(str(config["server"]))
        self.timeout = positive_seconds(config.get("timeout", 10), "rfc2136 timeout")
        self._keyring, self._keyname, self._algorithm = self._load_key(config)
        self._zones: dict[dns.name.Name, dns.name.Name] = {}

    # -- TSIG -----------------------------------------------------------------

    @staticmethod
    def _load_key(config: Mapping[str, Any]) -> tuple[Any, dns.name.Name, dns.name.Name]:
        algorithm = str(config.get("tsig_algorithm", "hmac-sha256"))
        if config.get("tsig_key_file"):
            name, algorithm, secret = read_bind_key_file(
                Path(str(config["tsig_key_file"])), config.get("tsig_name")
            )
        elif config.get("tsig_name"):
            name = str(config["tsig_name"])
            found = read_secret(config, "TSIG secret", file_key="tsig_secret_file", env_key="tsig_secret_env")
            if found is None:
                raise ConfigError(
                    "tsig_name needs tsig_secret_file or tsig_secret_env", "or use tsig_key_file"
                )
            secret = found
        else:
            raise ConfigError(
                "rfc2136 needs a TSIG key: unsigned updates are refused",
                "set tsig_key_file, or tsig_name with tsig_secret_file/tsig_secret_env",
            )
        try:
            base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                f"the TSIG secret of key {name!r} is not valid base64", "copy it again from the key file"
            ) from None
        try:
            keyname = dns.name.from_text(name)
            algo = dns.name.from_text(algorithm)
            keyring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
        except (dns.exception.DNSException, ValueError, TypeError) as exc:
            raise ConfigError(
                f"TSIG key name {name!r} or algorithm {algorithm!r} is not usable ({type(exc).__name__})",
                'write the key name as a domain name, e.g. tsig_name = "tlsa-manager."',
            ) from None
        return keyring, keyname, algo

    # -- zones -------------------------------------------------------------------

    def zone_for(self, owner: dns.name.Name) -> dns.name.Name:
        """The zone apex holding ``owner``, from the configuration or by asking the server for SOA."""
        if self.config.get("zone"):
            zone = dns.name.from_text(str(self.config["zone"]))
            if not owner.is_subdomain(zone):
                raise ConfigError(f"{owner} is not inside the configured zone {zone}", "fix zone = ...")
            return zone
        if owner not in self._zones:
            self.requests += 1
            self._zones[owner] = zone_apex(self.endpoint, owner, self.timeout)
        return self._zones[owner]

    def _unreachable(self, exc: BaseException) -> ProviderError:
        return unreachable(self.endpoint, exc, self.timeout)

    # -- Provider ---------------------------------------------------------------

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        out = {}
        for owner in owners:
            query = dns.message.make_query(owner, dns.rdatatype.TLSA)
            query.flags &= ~dns.flags.RD
            self.requests += 1
            try:
                response = dns.query.tcp(
                    query, self.endpoint.address, timeout=self.timeout, port=self.endpoint.port
                )
            except (OSError, dns.exception.DNSException) as exc:
                raise self._unreachable(exc) from None
            rcode = response.rcode()
            if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or not response.flags & dns.flags.AA:
                raise ProviderError(
                    f"{self.endpoint} did not answer authoritatively for {owner} "
                    f"({dns.rcode.to_text(rcode)})",
                    "point server at the zone's primary",
                )
            rrset = response.get_rrset(response.answer, owner, dns.rdataclass.IN, dns.rdatatype.TLSA)
            if rrset is None:
                out[owner] = RRset(owner)
            else:
                out[owner] = RRset(owner, frozenset(Tlsa.from_rdata(r) for r in rrset), rrset.ttl)
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
        for zone, changes in grouped(self.pending(changeset), lambda c: self.zone_for(c.owner)).items():
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
