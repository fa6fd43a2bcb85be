"""deSEC (desec.io) through its REST API with ``requests`` (imported only when used).

- The token's domains are listed once per run (``GET /domains/``) and the longest one
  holding the host is used, or the domain is given as ``domain``.  deSEC signs every domain with
  DNSSEC, so TLSA records work as soon as the DS is at the parent.
- Reads: one owner is ``GET /domains/{d}/rrsets/{subname}/TLSA/`` (404 = none); several
  owners list the domain's TLSA RRsets with ``cursor=`` pagination (500 a page),
  following the ``Link: <...>; rel="next"`` header until there is none.
- Writes: one bulk ``PATCH /domains/{d}/rrsets/`` per domain with every changed owner's
  whole RRset (``records: []`` would delete one; never sent, see check_safe).  deSEC
  applies a bulk request all or nothing.  It has no conditional write, so the owners
  are read again right before the PATCH and compared with what the plan expected; the
  window between that read and the write is one round trip (docs/provider-desec.md).
- deSEC rewrites records into canonical form (lower-case hex, split in 128-character
  chunks by dnspython); reads ignore case and spacing.
- TTLs below the domain's ``minimum_ttl`` (3600 unless deSEC support lowered it) or
  above 86400 are refused before anything is sent, never rounded: the planner times
  its gates by the TTL it asked for.
- Rate limits: reads 10/s and 50/min, RRset writes 2/s, 15/min, 100/h, 300/day per
  domain (hence one bulk request per sync).  A 429 carries Retry-After: we wait that
  long when it is at most ``max_retry_after`` (the request was not processed, so any
  request may be repeated), else stop with an error.  5xx and timeouts: reads are
  retried twice; after a failed PATCH we read again and report whether it applied.
- The token (``Authorization: Token ...``) comes from ``api_token_file``,
  ``api_token_env`` (default DESEC_TOKEN) or ``api_token`` in a 0600 config; it is
  never printed, logged or put in an error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import dns.name

from tlsa_manager import provider_settings as shared
from tlsa_manager.durations import positive_seconds
from tlsa_manager.endpoints import enclosing
from tlsa_manager.errors import ProviderError
from tlsa_manager.provider import Capabilities, OwnerChange, RRset, close_once
from tlsa_manager.secrets import ProviderSecret
from tlsa_manager_providers._http import MAX_RETRY_AFTER, backoff, retry_after, wait_rate_limit
from tlsa_manager_providers._rrsets import (
    ZonedProvider,
    parse_values,
    presentation,
    relative,
    target,
)

log = logging.getLogger(__name__)
API = "https://desec.io/api/v1"
MAX_TTL = 86400
TOKEN = ProviderSecret("api_token", "token", "deSEC", "DESEC_TOKEN")


class DesecProvider(ZonedProvider):
    """deSEC, one bulk PATCH per domain."""

    name = "desec"
    service = "deSEC"
    capabilities = Capabilities(
        atomic=True,
        compare_and_swap=False,
        eventual_propagation=True,
        min_ttl=3600,
        can_list_nameservers=False,
    )
    secret_settings: ClassVar[Mapping[str, str]] = TOKEN.declared()
    settings: ClassVar[Mapping[str, str]] = {
        **TOKEN.options(),
        "domain": "the deSEC domain (skips the owns_qname lookup)",
        **shared.api_url(API),
        **shared.timeout(30),
        **MAX_RETRY_AFTER,
        **shared.nameservers("ns1.desec.io:53, ns2.desec.org:53"),
    }

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self._token = self.secret(TOKEN)
        self.api = shared.token_api_url(config.get("api_url"), API, "desec")
        self.timeout = positive_seconds(config.get("timeout", 30), "desec timeout")
        self.max_retry_after = positive_seconds(config.get("max_retry_after", 60), "desec max_retry_after")
        self._session: Any = None
        self._domains: dict[str, dict[str, Any]] = {}
        self._all: dict[str, dict[str, Any]] | None = None

    # -- HTTP ---------------------------------------------------------------

    def _http(self) -> Any:
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.headers.update(
                {
                    "Authorization": f"Token {self._token}",
                    "Accept": "application/json",
                    "User-Agent": "tlsa-manager",
                }
            )
        return self._session

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        """One request with deSEC's retry rules; the response (2xx or 404) or one error line."""
        import requests

        url = url if url.startswith("http") else self.api + url
        for attempt in range(4):
            try:
                self.requests += 1
                response = self._http().request(method, url, timeout=self.timeout, **kwargs)
            except (requests.Timeout, requests.ConnectionError) as exc:
                if method != "GET" or attempt >= 2:
                    kind = "did not answer" if isinstance(exc, requests.Timeout) else "cannot be reached for"
                    raise _Unsure(f"deSEC {kind} {what}") from None
                backoff(attempt)
                continue
            status = response.status_code
            if status == 429:
                seconds = retry_after(response.headers.get("Retry-After"))
                hint = "nothing was changed; run again later"
                wait_rate_limit("deSEC", what, seconds, self.max_retry_after, last=attempt == 3, hint=hint)
                continue
            if status >= 500:
                if method != "GET" or attempt >= 2:
                    raise _Unsure(f"deSEC answered {status} to {what}")
                backoff(attempt)
                continue
            if status in (401, 403):
                raise ProviderError(
                    f"deSEC refused the token for {what} (HTTP {status}: {_detail(response)})",
                    "check the token and that its policy allows writing TLSA in this domain",
                )
            if status == 400:
                raise ProviderError(f"deSEC rejected {what}: {_detail(response)}", "nothing was changed")
            if status == 404 or 200 <= status < 300:
                return response
            raise ProviderError(f"deSEC answered {status} to {what}", "try again later")
        raise AssertionError("unreachable")

    def _json(self, response: Any, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"deSEC sent a malformed answer to {what}", "try again later") from None

    # -- domains ------------------------------------------------------------

    def domain_for(self, owner: dns.name.Name) -> dict[str, Any]:
        """The deSEC domain object (name, minimum_ttl) holding ``owner``."""
        if self.config.get("domain"):
            name = str(self.config["domain"]).rstrip(".").lower()
            if name not in self._domains:
                response = self._request("GET", f"/domains/{quote(name)}/", "reading the domain")
                if response.status_code == 404:
                    raise ProviderError(
                        f"deSEC has no domain {name} for this token", "check the domain setting"
                    )
                self._domains[name] = self._json(response, "reading the domain")
            return self._domains[name]
        if self._all is None:  # the token's domains, once per run: the longest that holds the owner wins
            self._all = {
                str(d["name"]).lower(): d for d in self._pages("/domains/", {"cursor": ""}, "listing domains")
            }
        domain = enclosing(owner, self._all.get)
        if domain is None:
            raise ProviderError(
                f"no deSEC domain holds {owner} for this token", "add the domain, or set domain"
            )
        return domain

    def _pages(self, url: str, params: dict[str, str], what: str) -> list[Any]:
        """Every item of a listing, following ``Link: <...>; rel="next"`` (500 a page)."""
        items: list[Any] = []
        next_url: str | None = url
        query: dict[str, str] | None = params
        while next_url:
            response = self._request("GET", next_url, what, params=query)
            if response.status_code == 404:
                raise ProviderError(f"deSEC: not found while {what}", "check the token's domains")
            page = self._json(response, what)
            if not isinstance(page, list):
                raise ProviderError(f"deSEC sent a malformed answer to {what}", "try again later")
            items.extend(page)
            next_url = response.links.get("next", {}).get("url")
            query = None  # the next link carries them
        return items

    # -- read ---------------------------------------------------------------

    def listing(self, domain: str, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, dict[str, Any]]:
        """The raw TLSA RRset of each owner that has one."""
        subnames = {relative(o, domain): o for o in owners}
        path = f"/domains/{quote(domain)}/rrsets/"
        out: dict[dns.name.Name, dict[str, Any]] = {}
        if len(owners) == 1:
            subname = next(iter(subnames))
            response = self._request("GET", f"{path}{quote(subname)}/TLSA/", "reading TLSA records")
            if response.status_code != 404:
                out[owners[0]] = self._json(response, "reading TLSA records")
            return out
        for rrset in self._pages(path, {"type": "TLSA", "cursor": ""}, "listing TLSA records"):
            owner = subnames.get(str(rrset.get("subname", "")).lower())
            if owner is not None and rrset.get("type") == "TLSA":
                out[owner] = rrset
        return out

    # -- apply --------------------------------------------------------------

    def zone_key(self, owner: dns.name.Name) -> str:
        return str(self.domain_for(owner)["name"])

    def ttl_range(self, owner: dns.name.Name) -> tuple[int, int]:
        return int(self.domain_for(owner).get("minimum_ttl") or 3600), MAX_TTL

    def parsed(self, owner: dns.name.Name, raw: Any) -> RRset:
        return _rrset(owner, raw)

    def apply_zone(self, domain: str, changes: Sequence[OwnerChange]) -> None:
        owners = [c.owner for c in changes]
        current = self.listing(domain, owners)  # compare right before the write
        body = []
        for change in changes:
            found = _rrset(change.owner, current.get(change.owner))
            new = target(change, found.records, found.ttl)
            if new is not None:
                body.append(
                    {
                        "subname": relative(change.owner, domain),
                        "type": "TLSA",
                        "ttl": change.ttl,
                        "records": presentation(new),
                    }
                )
        if not body:
            return
        try:
            self._request("PATCH", f"/domains/{quote(domain)}/rrsets/", "the bulk update", json=body)
        except _Unsure as unsure:
            if self.applied(domain, changes):
                return
            raise ProviderError(f"{unsure.args[0]}; nothing was applied", "run again later") from None
        self.writes += 1

    def close(self) -> None:
        close_once(self._session)
        self._session = None


class _Unsure(ProviderError):
    """No answer, or a 5xx: for a write, we must read again to know what happened."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "try again later")


def _detail(response: Any) -> str:
    """deSEC's error body in one short line: {"detail": ...}, field errors, or a bulk list."""
    try:
        doc = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    parts: list[str] = []

    def walk(item: Any, where: str) -> None:
        if isinstance(item, dict):
            for key, value in item.items():
                walk(value, key if key in ("detail", "non_field_errors") else f"{where}{key}: ")
        elif isinstance(item, list) and item and all(isinstance(i, dict) for i in item):
            for index, value in enumerate(item):
                walk(value, f"item {index} ")
        elif isinstance(item, list):
            for value in item:
                walk(value, where)
        elif item not in (None, ""):
            parts.append(f"{where if where not in ('detail', 'non_field_errors') else ''}{item}")

    walk(doc, "")
    return "; ".join(parts)[:300] or f"HTTP {response.status_code}"


def _rrset(owner: dns.name.Name, raw: Mapping[str, Any] | None) -> RRset:
    if not raw or not raw.get("records"):
        return RRset(owner)
    return RRset(owner, parse_values("deSEC", owner, raw["records"]), int(raw["ttl"]))
