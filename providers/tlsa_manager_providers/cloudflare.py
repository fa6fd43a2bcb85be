"""Cloudflare DNS through the official ``cloudflare`` SDK (imported only when used).

- The zone is found by walking up the host's labels, or given as ``zone_id`` so a
  token with "DNS:Edit" on that zone alone works.
- Reads list TLSA records with ``type=TLSA`` and ``name.exact`` (one owner) or the
  zone's TLSA records (several owners), page by page until ``result_info`` says done.
- All writes for a zone go in one batch call (deletes, then posts), which Cloudflare
  applies all or nothing.  Before it, the owners are listed again and compared with
  what the plan expected (compare-and-swap).  The SDK's own retries are off for the
  batch: a retried create can duplicate; after a 429 or 5xx we list again and decide.
- Records we create carry ``comment = "managed by tlsa-manager [INSTANCE]"``, INSTANCE
  being this installation's ``instance`` (default: the machine's host name), so two
  machines publishing at one MX name never take each other's records for their own;
  hex is compared
  case-insensitively and numeric fields (floats in the SDK's models) are cast to int.
- Error 81058 ("identical record exists") counts as present.
- The token comes from ``api_token_env`` or ``api_token_file``; it is never printed,
  logged or put into an exception.  CLOUDFLARE_EMAIL / CLOUDFLARE_API_KEY in the
  environment would make the SDK send those instead of the token: they are cleared.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import dns.name

from tlsa_manager import provider_settings as shared
from tlsa_manager.durations import positive_seconds
from tlsa_manager.endpoints import enclosing, parent_domain
from tlsa_manager.errors import ProviderConflict, ProviderError
from tlsa_manager.provider import Capabilities, ChangeSet, OwnerChange, Provider, RRset, conflict, grouped
from tlsa_manager.records import Tlsa, to_mtype, to_selector, to_usage
from tlsa_manager.secrets import ProviderSecret
from tlsa_manager_providers._http import MAX_RETRY_AFTER, backoff, wait_rate_limit

log = logging.getLogger(__name__)
MARKER = "managed by tlsa-manager"
PER_PAGE = 100
#: what the API's ttl 1 ("Auto", the dashboard's default) means for a DNS-only record
AUTO_TTL = 300
API = "https://api.cloudflare.com/client/v4"
TOKEN = ProviderSecret("api_token", "API token", "Cloudflare", "CLOUDFLARE_API_TOKEN")


class CloudflareProvider(Provider):
    """Cloudflare DNS, one batch call per zone."""

    name = "cloudflare"
    capabilities = Capabilities(
        atomic=True, compare_and_swap=True, eventual_propagation=True, min_ttl=60, can_list_nameservers=False
    )
    settings: ClassVar[Mapping[str, str]] = {
        **TOKEN.options(),
        "zone_id": "the zone's id: skips the zone lookup (token needs DNS:Edit only)",
        "zone": "the zone name (with zone_id)",
        **shared.api_url(API),
        **shared.timeout(30),
        **MAX_RETRY_AFTER,
        **shared.nameservers(),
    }
    secret_settings: ClassVar[Mapping[str, str]] = TOKEN.declared()

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self._token = self.secret(TOKEN)
        self.api_url = shared.token_api_url(config.get("api_url"), API, "cloudflare")
        self._client: Any = None
        self._zones: dict[str, tuple[str, str]] = {}
        self._dnssec_checked: set[str] = set()
        self.timeout = positive_seconds(config.get("timeout", 30), "cloudflare timeout")
        self.max_retry_after = positive_seconds(
            config.get("max_retry_after", 60), "cloudflare max_retry_after"
        )
        self.notes: list[str] = []

    # -- SDK ----------------------------------------------------------------

    def client(self, *, retries: bool = True) -> Any:
        """The SDK client, its own retries off: reads retry here (429 by Retry-After), the
        batch never blindly (a retried create can duplicate)."""
        if self._client is None:
            self._client = (self._make_client(0), self._make_client(0))
        return self._client[0 if retries else 1]

    def _make_client(self, max_retries: int) -> Any:
        import cloudflare

        kwargs: dict[str, Any] = {
            "api_token": self._token,
            "max_retries": max_retries,
            "timeout": self.timeout,
            "_strict_response_validation": True,
        }
        if self.config.get("api_url"):
            kwargs["base_url"] = self.api_url
        client = cloudflare.Cloudflare(**kwargs)
        # The SDK prefers CLOUDFLARE_EMAIL / CLOUDFLARE_API_KEY from the environment
        # over the token (also in with_options() copies, so none are made).
        client.api_email = None
        client.api_key = None
        client.user_service_key = None
        return client

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run an SDK call; turn every SDK exception into one ProviderError line."""
        import cloudflare

        self.requests += 1
        try:
            return func(*args, **kwargs)
        except cloudflare.RateLimitError as exc:
            raise _RateLimited(_retry_after(exc)) from None
        except (cloudflare.AuthenticationError, cloudflare.PermissionDeniedError) as exc:
            raise ProviderError(
                f"Cloudflare refused the token for {what} ({_codes(exc)})",
                "check the token and that it may edit DNS of this zone",
            ) from None
        except cloudflare.NotFoundError as exc:
            raise ProviderError(
                f"Cloudflare: not found during {what} ({_codes(exc)})", "check zone_id / the zone name"
            ) from None
        except cloudflare.InternalServerError as exc:
            raise _ServerError(f"Cloudflare answered {exc.status_code} during {what}") from None
        except cloudflare.APIStatusError as exc:
            raise _StatusError(exc.status_code, _error_codes(exc), f"{what}: {_codes(exc)}") from None
        except cloudflare.APITimeoutError:
            raise _ServerError(f"Cloudflare did not answer {what} within {self.timeout:g}s") from None
        except cloudflare.APIConnectionError:
            raise ProviderError(
                f"cannot reach the Cloudflare API for {what}", "check the network or api_url"
            ) from None
        except cloudflare.APIResponseValidationError:
            raise ProviderError(f"Cloudflare sent a malformed answer to {what}", "try again later") from None
        except ValueError:
            raise ProviderError(f"Cloudflare sent a malformed answer to {what}", "try again later") from None

    def _with_rate_limit(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        """A read: 429 waits Retry-After up to the bound; 5xx and timeouts are retried twice."""
        for attempt in range(4):
            try:
                return self._call(what, func, *args, **kwargs)
            except _ServerError as exc:
                if attempt >= 2:
                    raise ProviderError(str(exc.args[0]), "try again later") from None
                backoff(attempt)
            except _RateLimited as limited:
                last, hint = attempt == 3, "run again later"
                wait_rate_limit(
                    "Cloudflare", what, limited.seconds, self.max_retry_after, last=last, hint=hint
                )
        raise AssertionError("unreachable")

    # -- zones --------------------------------------------------------------

    def zone_for(self, owner: dns.name.Name) -> tuple[str, str]:
        """(zone id, zone name) holding ``owner``."""
        if self.config.get("zone_id"):
            name = str(self.config.get("zone") or parent_domain(owner).to_text(omit_final_dot=True))
            return str(self.config["zone_id"]), name
        if not self._zones:
            self._load_zones()
        found = enclosing(owner, self._zones.get, tld=True)  # the longest zone name that holds the owner
        if found is not None:
            zone_id, zone_name = found
            if zone_id not in self._dnssec_checked:
                self._dnssec_checked.add(zone_id)
                self._check_dnssec(zone_id, zone_name)
            return zone_id, zone_name
        raise ProviderError(
            f"no Cloudflare zone holds {owner} for this token", "add the zone to Cloudflare, or set zone_id"
        )

    def _load_zones(self) -> None:
        """Every zone the token sees, page by page (one request per 50 zones)."""
        page = 1
        while True:
            result = self._with_rate_limit("listing zones", self.client().zones.list, page=page, per_page=50)
            for zone in result.result or []:
                self._zones[str(zone.name).lower()] = (zone.id, zone.name)
            info = result.result_info
            if info is None or info.total_pages is None or page >= int(info.total_pages):
                return
            page += 1

    def _check_dnssec(self, zone_id: str, zone_name: str) -> None:
        try:
            status = self._call("the DNSSEC status", self.client().dns.dnssec.get, zone_id=zone_id).status
        except ProviderError:
            return
        if status != "active":
            note = (
                f"DNSSEC of {zone_name} is {status!r} at Cloudflare: "
                "TLSA records do nothing until it is active"
            )
            self.notes.append(note)
            log.warning("%s", note)

    # -- read ---------------------------------------------------------------

    def _list(self, zone_id: str, owners: Sequence[dns.name.Name]) -> list[Any]:
        params: dict[str, Any] = {"zone_id": zone_id, "type": "TLSA", "per_page": PER_PAGE}
        if len(owners) == 1:
            params["name"] = {"exact": owners[0].to_text(omit_final_dot=True)}
        records: list[Any] = []
        page = 1
        while True:
            result = self._with_rate_limit(
                "listing TLSA records", self.client().dns.records.list, page=page, **params
            )
            records.extend(result.result or [])
            info = result.result_info
            if info is None or info.total_pages is None or page >= int(info.total_pages):
                return records
            page += 1

    def _by_owner(
        self, records: Sequence[Any], owners: Sequence[dns.name.Name]
    ) -> dict[dns.name.Name, list[Any]]:
        wanted = {o.to_text(omit_final_dot=True).lower(): o for o in owners}
        out: dict[dns.name.Name, list[Any]] = {o: [] for o in owners}
        for record in records:
            owner = wanted.get(str(record.name).rstrip(".").lower())
            if owner is not None and record.type == "TLSA":
                out[owner].append(record)
        return out

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        out = {}
        for zone_id, zone_owners in grouped(owners, lambda o: self.zone_for(o)[0]).items():
            for owner, records in self._by_owner(self._list(zone_id, zone_owners), zone_owners).items():
                out[owner] = _rrset(owner, records, marker(self.instance))
        return out

    # -- apply --------------------------------------------------------------

    def apply(self, changeset: ChangeSet) -> None:
        for zone_id, changes in grouped(self.pending(changeset), lambda c: self.zone_for(c.owner)[0]).items():
            self._apply_zone(zone_id, changes)

    def _apply_zone(self, zone_id: str, changes: Sequence[OwnerChange]) -> None:
        owners = [c.owner for c in changes]
        for attempt in range(3):
            current = self._by_owner(self._list(zone_id, owners), owners)
            deletes: list[dict[str, str]] = []
            posts: list[dict[str, Any]] = []
            done = True
            for change in changes:
                found = _rrset(change.owner, current[change.owner]).records
                if found == change.result and not change.ttl_change:
                    continue
                if found != change.expected:
                    raise conflict(change.owner, change.expected, found)
                done = False
                remove = change.delete | (change.expected if change.ttl_change else frozenset())
                add = (change.add - change.expected) | (change.result if change.ttl_change else frozenset())
                for record in current[change.owner]:
                    if _tlsa(record) in remove:
                        deletes.append({"id": record.id})
                for tlsa in sorted(add):
                    posts.append(_post(change.owner, tlsa, change.ttl, marker(self.instance)))
            if done:
                return
            try:
                self._call(
                    "the batch update",
                    self.client(retries=False).dns.records.batch,
                    zone_id=zone_id,
                    deletes=deletes,
                    posts=posts,
                )
                self.writes += 1
                return
            except _RateLimited as limited:
                last, hint = attempt == 2, "nothing was applied; run again later"
                what = "the batch update"
                wait_rate_limit(
                    "Cloudflare", what, limited.seconds, self.max_retry_after, last=last, hint=hint
                )
            except _ServerError as exc:
                # The batch is all or nothing; list again to learn which it was.
                after = self._by_owner(self._list(zone_id, owners), owners)
                if all(_rrset(c.owner, after[c.owner]).records == c.result for c in changes):
                    return
                raise ProviderError(f"{exc.args[0]}; nothing was applied", "run again later") from None
            except _StatusError as exc:
                if 81058 in exc.codes:  # identical record exists: someone added it meanwhile
                    continue
                raise ProviderError(
                    f"Cloudflare rejected the batch update ({exc.detail})",
                    "nothing was applied; check the records and the token's rights",
                ) from None
        raise ProviderConflict("the TLSA records kept changing during the update", "run again")


class _RateLimited(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


class _ServerError(Exception):
    pass


class _StatusError(Exception):
    def __init__(self, status: int, codes: set[int], detail: str) -> None:
        super().__init__(detail)
        self.status, self.codes, self.detail = status, codes, detail


def _retry_after(exc: Any) -> float:
    try:
        return float(exc.response.headers.get("retry-after", "1"))
    except (TypeError, ValueError):
        return 1.0


def _error_codes(exc: Any) -> set[int]:
    body = getattr(exc, "body", None)
    errors = body.get("errors", []) if isinstance(body, dict) else []
    return {int(e.get("code", 0)) for e in errors if isinstance(e, dict)}


def _codes(exc: Any) -> str:
    body = getattr(exc, "body", None)
    errors = body.get("errors", []) if isinstance(body, dict) else []
    parts = [f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict)]
    return f"HTTP {getattr(exc, 'status_code', '?')}" + (f", {'; '.join(parts)}" if parts else "")


def _tlsa(record: Any) -> Tlsa:
    data = record.data
    return Tlsa(
        to_usage(int(data.usage)),
        to_selector(int(data.selector)),
        to_mtype(int(data.matching_type)),
        bytes.fromhex(str(data.certificate).strip()),
    )


def marker(instance: str) -> str:
    """The comment that marks a record as published by this instance (and no other)."""
    return f"{MARKER} [{instance}]" if instance else MARKER


def _rrset(owner: dns.name.Name, records: Sequence[Any], mark: str = "") -> RRset:
    if not records:
        return RRset(owner)
    tlsas = frozenset(_tlsa(r) for r in records)
    managed = frozenset(_tlsa(r) for r in records if mark and (r.comment or "") == mark)
    return RRset(owner, tlsas, max(_ttl(r) for r in records), managed)


def _ttl(record: Any) -> int:
    """The TTL served: the API gives "Auto" as 1, which Cloudflare serves as 300 s."""
    ttl = int(record.ttl)
    return AUTO_TTL if ttl == 1 else ttl


def _post(owner: dns.name.Name, record: Tlsa, ttl: int, mark: str = MARKER) -> dict[str, Any]:
    return {
        "type": "TLSA",
        "name": owner.to_text(omit_final_dot=True),
        "ttl": ttl,
        "comment": mark,
        "data": {
            "usage": int(record.usage),
            "selector": int(record.selector),
            "matching_type": int(record.mtype),
            "certificate": record.data.hex(),
        },
    }
