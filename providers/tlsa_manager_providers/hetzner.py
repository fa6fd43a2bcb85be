"""Hetzner DNS through the official ``hcloud`` SDK (the optional extra ``hetzner``, imported lazily).

Hetzner's DNS moved into the Cloud API (``api.hetzner.cloud/v1/zones``); ``hcloud``
2.x has its zones and RRsets (``client.zones``), so this provider uses the SDK and no
hand-written HTTP.

- The zone is given as ``zone`` (name or id), or the longest of the project's zones
  holding the host (``GET /zones``, 50 a page, once per run).  Only primary zones can
  be edited: a secondary zone's records come from its own primary (use that primary's
  provider).
- Reads: one owner is ``GET /zones/{z}/rrsets/{name}/TLSA`` (404 = none); several
  owners list the zone's TLSA RRsets 50 a page, following ``meta.pagination.next_page``.
- Writes, per owner whose RRset must change: ``POST /zones/{z}/rrsets`` when there is
  none, else ``actions/set_records`` (the whole record list, so a repeat is harmless)
  and ``actions/change_ttl`` when the TTL changes; each returns an action that we wait
  for until ``success``.  Hetzner has no conditional write and no multi-RRset batch: the
  owners are read again right before writing and compared with the plan (a window of
  one round trip per owner), and a change set touching several owners is not atomic.
- Records we write carry the comment "managed by tlsa-manager"; others' comments are
  kept.  Values are compared ignoring hex case and spacing.
- TTLs below 60 s (``min_ttl``) are refused (never rounded: the planner times its gates by the TTL
  it asked for).
- Rate limit: 3,600 requests an hour per project.  hcloud retries ``rate_limit_exceeded``,
  ``conflict`` (the zone is busy with another action), 502/504 and timeouts, with
  exponential backoff (1 s doubling to 60 s, jittered), 5 times; then we stop with one
  error line.
- The token (a Cloud project API token with Read & Write) comes from ``api_token_file``,
  ``api_token_env`` (default HCLOUD_TOKEN) or ``api_token`` in a 0600 config; never
  printed, logged or put in an error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import dns.name

from tlsa_manager import provider_settings as shared
from tlsa_manager.configvalues import int_value
from tlsa_manager.durations import positive_seconds
from tlsa_manager.endpoints import enclosing
from tlsa_manager.errors import ProviderConflict, ProviderError
from tlsa_manager.provider import Capabilities, ChangeSet, OwnerChange, Provider, RRset
from tlsa_manager.records import Tlsa
from tlsa_manager.secrets import ProviderSecret
from tlsa_manager_providers._rrsets import MAX_TTL, check_ttl, parse_values, relative, target

log = logging.getLogger(__name__)
MARKER = "managed by tlsa-manager"
API = "https://api.hetzner.cloud/v1"
MIN_TTL = 60
PER_PAGE = 50
TOKEN = ProviderSecret("api_token", "API token", "Hetzner", "HCLOUD_TOKEN")


class HetznerProvider(Provider):
    """Hetzner DNS (Cloud API zones), one set_records action per changed owner."""

    name = "hetzner"
    capabilities = Capabilities(
        atomic=False,
        compare_and_swap=False,
        eventual_propagation=True,
        min_ttl=MIN_TTL,
        can_list_nameservers=False,
    )
    secret_settings: ClassVar[Mapping[str, str]] = TOKEN.declared()
    settings: ClassVar[Mapping[str, str]] = {
        **TOKEN.options(),
        "zone": "the zone's name or id (skips the zone lookup)",
        **shared.api_url(API),
        **shared.timeout(30),
        "poll_interval": "seconds between polls of a write's action (default 1)",
        "min_ttl": f"smallest TTL the API accepts (default {MIN_TTL}, Hetzner's; lower for test servers)",
        **shared.nameservers(),
    }

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self._token = self.secret(TOKEN)
        self.api_url = shared.token_api_url(config.get("api_url"), API, "hetzner")
        self._client: Any = None
        self._zones: dict[str, Any] = {}
        self._all: dict[str, Any] | None = None
        self.min_ttl = int_value(config.get("min_ttl", MIN_TTL), "hetzner min_ttl", 1, MAX_TTL, str(MIN_TTL))
        self.poll_interval = positive_seconds(config.get("poll_interval", 1), "hetzner poll_interval")
        self.timeout = positive_seconds(config.get("timeout", 30), "hetzner timeout")

    # -- SDK ----------------------------------------------------------------

    def client(self) -> Any:
        if self._client is None:
            import hcloud

            self._client = hcloud.Client(
                token=self._token,
                api_endpoint=self.api_url,
                application_name="tlsa-manager",
                poll_interval=self.poll_interval,
                timeout=self.timeout,
            )
            # provider.requests counts every HTTP request, the SDK's retries and action
            # polls included: a response hook on the SDK's requests session (not public API,
            # hence the guard; without it only the count is lost)
            session = getattr(getattr(self._client, "_client", None), "_session", None)
            if session is not None:
                session.hooks["response"].append(self._count)
        return self._client

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """One SDK call (the SDK retries what Hetzner allows); errors become one line."""
        import hcloud
        import requests
        from hcloud.actions import ActionFailedException, ActionTimeoutException

        try:
            return func(*args, **kwargs)
        except hcloud.APIException as exc:
            code = exc.code
            if code in ("unauthorized", 401):
                raise ProviderError(
                    f"Hetzner refused the token for {what} (unauthorized)", "check the API token"
                ) from None
            if code == "token_readonly":
                raise ProviderError(
                    f"Hetzner refused {what}: the API token is read-only", "create a Read & Write token"
                ) from None
            if code in ("forbidden", 403):
                raise ProviderError(
                    f"Hetzner refused {what} (forbidden)", "the token needs Read & Write on the DNS project"
                ) from None
            if code in ("not_found", 404):
                raise _NotFound() from None
            if code == "uniqueness_error":
                raise _Exists() from None
            if code == "rate_limit_exceeded":
                raise ProviderError(
                    f"Hetzner kept rate-limiting {what} (3,600 requests an hour per project)",
                    "nothing more was changed; run again later",
                ) from None
            if code == "protected":
                raise ProviderError(
                    f"Hetzner refused {what}: the RRset is protected against changes",
                    "lift its change protection in the Hetzner console",
                ) from None
            if code == "incorrect_zone_mode":
                raise ProviderError(
                    f"Hetzner refused {what}: the zone is a secondary zone",
                    "change the records at its primary",
                ) from None
            message = str(getattr(exc, "message", ""))[:200]
            raise ProviderError(f"Hetzner rejected {what} ({code}: {message})", "check the records") from None
        except ActionFailedException as exc:
            error = getattr(exc.action, "error", None) or {}
            raise ProviderError(
                f"Hetzner could not carry out {what} ({error.get('code', '?')}: {error.get('message', '')})",
                "run again later",
            ) from None
        except ActionTimeoutException:
            raise ProviderError(
                f"Hetzner is still running {what}", "it was accepted and will apply; run again later"
            ) from None
        except requests.Timeout:
            raise ProviderError(f"Hetzner did not answer {what}", "run again later") from None
        except requests.ConnectionError:
            raise ProviderError(
                f"cannot reach the Hetzner API for {what}", "check the network or api_url"
            ) from None
        except (ValueError, KeyError, TypeError):
            raise ProviderError(f"Hetzner sent a malformed answer to {what}", "try again later") from None

    # -- zones --------------------------------------------------------------

    def zone_for(self, owner: dns.name.Name) -> Any:
        """The bound zone holding ``owner`` (primary mode)."""
        if self.config.get("zone"):
            key = str(self.config["zone"]).rstrip(".").lower()
            if key not in self._zones:
                try:
                    self._zones[key] = self._call("reading the zone", self.client().zones.get, key)
                except _NotFound:
                    raise ProviderError(
                        f"Hetzner has no zone {key} for this token", "check the zone setting"
                    ) from None
            zone = self._zones[key]
        else:
            if self._all is None:
                self._all = self._list_zones()
            zone = enclosing(owner, self._all.get)
            if zone is None:
                raise ProviderError(
                    f"no Hetzner zone holds {owner} for this token", "add the zone, or set zone"
                )
        if zone.mode != "primary":
            raise ProviderError(
                f"Hetzner zone {zone.name} is a {zone.mode} zone: its records come from its primary",
                "publish TLSA at the primary (e.g. with the rfc2136 provider)",
            )
        return zone

    def _list_zones(self) -> dict[str, Any]:
        """The project's zones by name, once per run (50 a request, following next_page)."""
        zones: dict[str, Any] = {}
        page: int | None = 1
        while page:
            result = self._call("listing zones", self.client().zones.get_list, page=page, per_page=PER_PAGE)
            zones.update({str(z.name).lower(): z for z in result.zones})
            pagination = result.meta.pagination if result.meta else None
            page = pagination.next_page if pagination else None
        return zones

    # -- read ---------------------------------------------------------------

    def _list(self, zone: Any, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, Any]:
        """The bound TLSA RRset of each owner that has one."""
        names = {relative(o, zone.name): o for o in owners}
        zones = self.client().zones
        if len(owners) == 1:
            try:
                return {
                    owners[0]: self._call(
                        "reading TLSA records", zones.get_rrset, zone, next(iter(names)), "TLSA"
                    )
                }
            except _NotFound:
                return {}
        out: dict[dns.name.Name, Any] = {}
        page: int | None = 1
        while page:
            result = self._call(
                "listing TLSA records",
                zones.get_rrset_list,
                zone,
                type=["TLSA"],
                page=page,
                per_page=PER_PAGE,
            )
            for rrset in result.rrsets:
                owner = names.get(str(rrset.name).lower())
                if owner is not None and rrset.type == "TLSA":
                    out[owner] = rrset
            pagination = result.meta.pagination if result.meta else None
            page = pagination.next_page if pagination else None
        return out

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        by_zone: dict[str, tuple[Any, list[dns.name.Name]]] = {}
        for owner in owners:
            zone = self.zone_for(owner)
            by_zone.setdefault(str(zone.id), (zone, []))[1].append(owner)
        out = {}
        for zone, zone_owners in by_zone.values():
            raw = self._list(zone, zone_owners)
            for owner in zone_owners:
                out[owner] = _rrset(owner, raw.get(owner), zone.ttl)
        return out

    # -- apply --------------------------------------------------------------

    def apply(self, changeset: ChangeSet) -> None:
        changeset.check_safe()
        by_zone: dict[str, tuple[Any, list[OwnerChange]]] = {}
        for change in changeset.changes:
            if not change.is_noop:
                check_ttl("Hetzner", change.owner, change.ttl, self.min_ttl, MAX_TTL)
                zone = self.zone_for(change.owner)
                by_zone.setdefault(str(zone.id), (zone, []))[1].append(change)
        for zone, changes in by_zone.values():
            # Compare every owner right before the writes, and before the first write: a
            # conflict found there leaves the whole change set unapplied.
            current = self._list(zone, [c.owner for c in changes])
            todo = []
            for change in changes:
                found = _rrset(change.owner, current.get(change.owner), zone.ttl)
                new = target(change, found.records, found.ttl)
                if new is not None:
                    todo.append((change, current.get(change.owner), found, new))
            for change, rrset, found, new in todo:
                self._apply_owner(zone, change, rrset, found, new)

    def _apply_owner(
        self, zone: Any, change: OwnerChange, rrset: Any, found: RRset, new: frozenset[Tlsa]
    ) -> None:
        from hcloud.zones import ZoneRecord

        comments = {  # others' comments on records we keep stay as they are
            next(iter(parse_values("Hetzner", change.owner, [r.value]))): r.comment
            for r in (rrset.records if rrset is not None else [])
        }
        records = [
            ZoneRecord(value=record.to_text(), comment=comments.get(record) or MARKER)
            for record in sorted(new, key=lambda r: r.to_text())
        ]
        zones = self.client().zones
        if rrset is None:
            try:
                response = self._call(
                    "creating the RRset",
                    zones.create_rrset,
                    zone,
                    name=relative(change.owner, zone.name),
                    type="TLSA",
                    ttl=change.ttl,
                    records=records,
                )
            except _Exists:  # created by someone else since we read
                raise ProviderConflict(
                    f"{change.owner} was created by someone else since it was read",
                    "run again to re-read and re-plan",
                ) from None
            self._wait(response.action, "creating the RRset")
            return
        if found.records != new:
            self._wait(
                self._call("setting the records", zones.set_rrset_records, rrset, records),
                "setting the records",
            )
        if found.ttl != change.ttl:
            self._wait(
                self._call("changing the TTL", zones.change_rrset_ttl, rrset, change.ttl), "changing the TTL"
            )

    def _count(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self.requests += 1

    def _wait(self, action: Any, what: str) -> None:
        self.writes += 1
        self._call(what, action.wait_until_finished)


class _NotFound(Exception):
    pass


class _Exists(Exception):
    pass


def _rrset(owner: dns.name.Name, raw: Any, zone_ttl: int | None) -> RRset:
    """An RRset without its own TTL is served with the zone's default TTL."""
    if raw is None or not raw.records:
        return RRset(owner)
    records = parse_values("Hetzner", owner, (r.value for r in raw.records))
    ours = (r.value for r in raw.records if (r.comment or "").startswith(MARKER))
    ttl = raw.ttl if raw.ttl is not None else zone_ttl
    return RRset(owner, records, int(ttl) if ttl is not None else None, parse_values("Hetzner", owner, ours))
