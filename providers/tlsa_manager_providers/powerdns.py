"""PowerDNS Authoritative through its HTTP API (``requests``, imported only when used).

- Zones: ``zone = ...`` or the longest zone of ``GET /servers/{id}/zones`` holding the
  owner (one request per run).  The API has no pagination: a zone GET returns every
  RRset; a read of one owner uses the ``rrset_name``/``rrset_type`` filters instead, but
  the read before a write is the whole zone (the filtered answer omits disabled records).
- Writes: one ``PATCH /servers/{id}/zones/{zone}`` per zone with ``changetype REPLACE``
  of each owner's whole TLSA RRset.  PowerDNS applies one PATCH in one transaction
  (all or nothing), bumps the SOA serial by the zone's SOA-EDIT-API and re-signs.
- Concurrent edits: the API has no precondition, so every write is read, compare, write,
  read back.  Before the PATCH the owners are read and compared with what the plan
  expected (a difference is a conflict, nothing written).  After it they are read again:
  if an owner does not hold what we wrote, another writer came after us (conflict).
  The zone's ``serial`` from both reads tells whether anyone else edited the zone
  between them (SOA-EDIT-API INCREASE or DEFAULT: one edit moves it by one, or to
  YYYYMMDD01); then a note says a concurrent edit at these owners may have been
  replaced.  The writer so replaced sees its records missing in its own read-back, or
  its propagation gate never sees them served: nothing is deployed on a lost write.
- Records: content is sent as ``3 1 1 <lower-case hex>`` (the API refuses other
  spacing); reads accept any case.  Disabled records are not served, so they are not
  part of the RRset we compare, and a REPLACE keeps them, disabled, as they were.
- The API key comes from ``api_key_file``, ``api_key_env`` (default ``PDNS_API_KEY``) or
  ``api_key`` in a 0600 config; it is sent as ``X-API-Key`` and never printed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import dns.name

from tlsa_manager import provider_settings as shared
from tlsa_manager.endpoints import Endpoint, parse_endpoint
from tlsa_manager.errors import ConfigError, ProviderConflict, ProviderError
from tlsa_manager.provider import (
    Capabilities,
    ChangeSet,
    OwnerChange,
    Provider,
    RRset,
    close_once,
    conflict,
    grouped,
)
from tlsa_manager.records import Tlsa
from tlsa_manager.secrets import ProviderSecret

log = logging.getLogger(__name__)
#: tries of one zone's PATCH when the server answers 5xx/429 or times out (re-read between)
PATCH_ATTEMPTS = 4
API = "http://127.0.0.1:8081"
KEY = ProviderSecret("api_key", "API key", "PowerDNS", "PDNS_API_KEY")


@dataclass(frozen=True)
class ZoneState:
    """What one read of a zone showed: the serial, its SOA-EDIT-API, the TLSA RRsets asked for,
    and the disabled TLSA records at those owners (kept as they are by a REPLACE)."""

    serial: int
    soa_edit_api: str
    rrsets: Mapping[dns.name.Name, RRset]
    disabled: Mapping[dns.name.Name, tuple[str, ...]]


class PowerDnsProvider(Provider):
    """PowerDNS Authoritative HTTP API: one PATCH per zone, read back after it."""

    name = "powerdns"
    capabilities = Capabilities(atomic=True, compare_and_swap=False, eventual_propagation=True, min_ttl=1)
    settings: ClassVar[Mapping[str, str]] = {
        **shared.api_url(API),
        "server_id": "the server id in the API paths (default localhost)",
        **shared.zone("by listing the zones"),
        **KEY.options(),
        "tls_ca_file": "CA bundle to verify an https api_url with (default: the system's)",
        **shared.timeout(30),
        "dns_server": "a DNS server of the zone to find its NS from, host[:port] (default: api_url's host)",
        **shared.nameservers("default: the zone's NS"),
    }
    secret_settings: ClassVar[Mapping[str, str]] = KEY.declared()

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.api_url = str(config.get("api_url", API)).rstrip("/")
        parts = urlsplit(self.api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"powerdns api_url is not an http(s) URL (scheme {parts.scheme!r})",
                'e.g. api_url = "http://127.0.0.1:8081"',
            )
        # Messages name the server without any user:password the URL may carry.
        self.where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self.server_id = str(config.get("server_id", "localhost"))
        timeout = config.get("timeout", 30)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
            raise ConfigError(
                f"powerdns timeout must be seconds above 0, at most 3600, not {timeout!r}",
                "e.g. timeout = 30",
            )
        self.timeout = float(timeout)
        self._key = self.secret(KEY)
        self._session: Any = None
        self._zones: list[tuple[dns.name.Name, str]] | None = None

    # -- HTTP -----------------------------------------------------------------

    def _http(self) -> Any:
        if self._session is None:
            import requests

            session = requests.Session()
            session.headers.update({"X-API-Key": self._key, "Accept": "application/json"})
            session.trust_env = False  # no proxy from the environment sees the key
            if self.config.get("tls_ca_file"):
                session.verify = str(self.config["tls_ca_file"])
            self._session = session
        return self._session

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """One API call; every failure becomes one ProviderError line without the key."""
        import requests

        url = f"{self.api_url}/api/v1/servers/{quote(self.server_id, safe='')}{path}"
        self.requests += 1
        try:
            response = self._http().request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise _Unsure(f"the PowerDNS API did not answer {what} within {self.timeout:g}s") from None
        except requests.RequestException as exc:
            raise ProviderError(
                f"cannot reach the PowerDNS API at {self.where} for {what} ({type(exc).__name__})",
                "check api_url and that the webserver and API are on (api=yes, webserver=yes)",
            ) from None
        status = response.status_code
        if status in (200, 201, 204):
            if status == 204 or not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise ProviderError(f"PowerDNS sent a malformed answer to {what}", "check api_url") from None
        detail = _error_text(response)
        if status == 401:
            raise ProviderError(
                f"PowerDNS refused the API key for {what} (HTTP 401)", "check api_key_file / api_key_env"
            )
        if status == 403:
            raise ProviderError(
                f"PowerDNS forbids {what} from this address (HTTP 403)", "add it to webserver-allow-from"
            )
        if status == 404:
            raise ProviderError(
                f"PowerDNS: not found during {what} (HTTP 404{': ' + detail if detail else ''})",
                "check zone and server_id",
            )
        if status == 422:
            raise ProviderError(
                f"PowerDNS rejected {what} (HTTP 422: {detail})", "nothing was applied; check the records"
            )
        if status == 429 or status >= 500:
            raise _Unsure(f"PowerDNS answered HTTP {status} to {what}{': ' + detail if detail else ''}")
        raise ProviderError(f"PowerDNS answered HTTP {status} to {what}: {detail}", "check the server's log")

    def _read_request(self, path: str, what: str, **kwargs: Any) -> Any:
        """A GET: timeouts, 429 and 5xx are tried three times, a second apart."""
        for attempt in range(3):
            try:
                return self._request("GET", path, what, **kwargs)
            except _Unsure as exc:
                if attempt == 2:
                    raise ProviderError(str(exc.args[0]), "try again later") from None
                time.sleep(1.0)
        raise AssertionError("unreachable")

    # -- zones --------------------------------------------------------------------

    def zone_for(self, owner: dns.name.Name) -> tuple[dns.name.Name, str]:
        """(zone apex, zone id in API paths) holding ``owner``."""
        if self.config.get("zone"):
            zone = dns.name.from_text(str(self.config["zone"]))
            if not owner.is_subdomain(zone):
                raise ConfigError(f"{owner} is not inside the configured zone {zone}", "fix zone = ...")
            return zone, zone.to_text()
        if self._zones is None:
            listed = self._read_request("/zones", "listing zones") or []
            self._zones = sorted(
                ((dns.name.from_text(str(z["name"])), str(z["id"])) for z in listed),
                key=lambda z: -len(z[0].labels),
            )
        for zone, zone_id in self._zones:
            if owner.is_subdomain(zone):
                return zone, zone_id
        raise ProviderError(
            f"PowerDNS at {self.where} has no zone holding {owner}", "create the zone, or set zone = ..."
        )

    def read_zone(self, zone_id: str, owners: Sequence[dns.name.Name], *, whole: bool = False) -> ZoneState:
        """One GET: the zone's serial and the TLSA RRsets at ``owners``: filtered to the
        owner when there is one, else (or when ``whole``) the zone, as the API does not
        paginate.  A filtered GET leaves disabled records out (PowerDNS 4.7), so the read
        a REPLACE is built from is always ``whole``."""
        filtered = len(owners) == 1 and not whole
        params = {"rrset_name": owners[0].to_text(), "rrset_type": "TLSA"} if filtered else None
        doc = self._read_request(f"/zones/{quote(zone_id, safe='')}", "reading the zone", params=params)
        if not isinstance(doc, dict):
            raise ProviderError("PowerDNS sent a malformed zone", "check api_url")
        wanted = set(owners)
        found: dict[dns.name.Name, list[tuple[str, bool]]] = {o: [] for o in owners}
        ttls: dict[dns.name.Name, int] = {}
        for rrset in doc.get("rrsets", []):
            if rrset.get("type") != "TLSA":
                continue
            owner = dns.name.from_text(str(rrset["name"]))
            if owner not in wanted:
                continue
            ttls[owner] = int(rrset["ttl"])
            for rec in rrset.get("records", []):
                found[owner].append((str(rec["content"]), bool(rec.get("disabled", False))))
        rrsets = {}
        disabled = {}
        for owner in owners:
            enabled = frozenset(Tlsa.from_text(c) for c, off in found[owner] if not off)
            rrsets[owner] = RRset(owner, enabled, ttls.get(owner) if enabled else None)
            disabled[owner] = tuple(c for c, off in found[owner] if off)
        return ZoneState(int(doc.get("serial", 0)), str(doc.get("soa_edit_api", "")), rrsets, disabled)

    # -- Provider ---------------------------------------------------------------

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        out: dict[dns.name.Name, RRset] = {}
        for zone_id, zone_owners in grouped(owners, lambda o: self.zone_for(o)[1]).items():
            out.update(self.read_zone(zone_id, zone_owners).rrsets)
        return out

    def apply(self, changeset: ChangeSet) -> None:
        for zone_id, changes in grouped(self.pending(changeset), lambda c: self.zone_for(c.owner)[1]).items():
            self._apply_zone(zone_id, changes)

    def _apply_zone(self, zone_id: str, changes: Sequence[OwnerChange]) -> None:
        """Read, compare, PATCH, read back.  A PATCH answered by 5xx, 429 or a timeout is one
        transaction that either happened or not: read again, and if the owners still hold
        what we expected, try again (e.g. SQLite's "database is locked" under two writers)."""
        owners = [c.owner for c in changes]
        before = self.read_zone(zone_id, owners, whole=True)
        for attempt in range(PATCH_ATTEMPTS):
            todo = []
            for change in changes:
                found = before.rrsets[change.owner]
                if found.records == change.result and found.ttl == change.ttl:
                    continue  # already so (a retry after a lost answer)
                if found.records != change.expected:
                    raise conflict(change.owner, change.expected, found.records)
                todo.append(change)
            if not todo:
                return
            body = {"rrsets": [_rrset_json(c, before.disabled[c.owner]) for c in todo]}
            try:
                self._request("PATCH", f"/zones/{quote(zone_id, safe='')}", "the zone update", json=body)
            except _Unsure as exc:
                after = self.read_zone(zone_id, owners, whole=True)
                if all(_holds(after, c) for c in todo):
                    self.writes += 1
                    return
                if attempt == PATCH_ATTEMPTS - 1:
                    raise ProviderError(
                        f"{exc.args[0]}; the update was not applied", "run again: it re-reads first"
                    ) from None
                log.info("PowerDNS: %s; not applied, trying again", exc.args[0])
                time.sleep(0.2 * (attempt + 1))
                before = after
                continue
            self.writes += 1
            self._verify(zone_id, owners, todo, before)
            return

    def _verify(
        self, zone_id: str, owners: Sequence[dns.name.Name], todo: Sequence[OwnerChange], before: ZoneState
    ) -> None:
        """Read back: each owner holds what we wrote, and nobody else edited the zone meanwhile."""
        after = self.read_zone(zone_id, owners)
        for change in todo:
            if not _holds(after, change):
                found = after.rrsets[change.owner].records
                raise ProviderConflict(
                    f"{change.owner} changed while it was written (now "
                    f"{', '.join(sorted(r.to_text() for r in found)) or 'empty'})",
                    "another writer edited it at the same moment; run again to re-read and re-plan",
                )
        if other_edits(before.serial, after.serial, after.soa_edit_api):
            note = (
                f"the zone {zone_id} was edited by someone else while tlsa-manager wrote it (serial "
                f"{before.serial} -> {after.serial}); a change made at "
                f"{', '.join(str(c.owner) for c in todo)} in that moment may have been replaced"
            )
            self.notes.append(note)
            log.warning("%s", note)

    def discovery_server(self) -> Endpoint:
        """``dns_server``, else the API's host on port 53: it serves the zone's NS."""
        if self.config.get("dns_server"):
            return parse_endpoint(str(self.config["dns_server"]))
        host = urlsplit(self.api_url).hostname or "127.0.0.1"
        return parse_endpoint(f"[{host}]:53" if ":" in host else f"{host}:53")

    def close(self) -> None:
        close_once(self._session)
        self._session = None


class _Unsure(Exception):
    """A timeout, 429 or 5xx: a read may be retried; a write must be read back first."""


def other_edits(before: int, after: int, soa_edit_api: str) -> bool:
    """Whether the serial moved further than our one PATCH explains (INCREASE: +1;
    DEFAULT: +1 or to YYYYMMDD01 of the day).  Other SOA-EDIT-API kinds tell nothing."""
    kind = soa_edit_api.upper()
    if kind not in ("INCREASE", "DEFAULT"):
        return False
    step = (after - before) % 2**32
    if step == 1:
        return False
    return not (kind == "DEFAULT" and after % 100 == 1 and 0 < step < 2**31)


def _holds(state: ZoneState, change: OwnerChange) -> bool:
    rrset = state.rrsets[change.owner]
    return rrset.records == change.result and rrset.ttl == change.ttl


def _rrset_json(change: OwnerChange, disabled: Sequence[str]) -> dict[str, Any]:
    records = [{"content": r.to_text(), "disabled": False} for r in sorted(change.result)]
    records += [{"content": c, "disabled": True} for c in disabled]
    return {
        "name": change.owner.to_text(),
        "type": "TLSA",
        "ttl": change.ttl,
        "changetype": "REPLACE",
        "records": records,
    }


def _error_text(response: Any) -> str:
    try:
        doc = response.json()
    except ValueError:
        return str(response.text or "").strip()[:200]
    return str(doc.get("error", "")).strip()[:300] if isinstance(doc, dict) else ""
