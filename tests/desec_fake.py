"""A local fake of the deSEC API (https://desec.readthedocs.io), for the provider's real HTTP client.

Modelled on deSEC's documented behaviour:
- ``Authorization: Token ...``; 401 {"detail": "Invalid token."} otherwise;
- ``GET /domains/`` (cursor pagination as below; ``owns_qname=`` for the domain
  responsible for a name), ``GET /domains/{name}/`` with ``minimum_ttl`` (3600 by default);
- ``GET /domains/{name}/rrsets/`` with ``type``/``subname`` filters; more than 500
  RRsets without ``cursor`` is 400 "Pagination required"; with ``cursor`` pages of 500
  and ``Link: <...>; rel="first", <...>; rel="next"`` headers;
- ``GET /domains/{name}/rrsets/{subname}/{type}/`` (404 {"detail": "Not found."});
- bulk ``PATCH /domains/{name}/rrsets/``: a list of RRsets, validated item by item
  (400 with one error object per item, {} for the good ones: TTL below the domain's
  minimum or above 86400, missing ttl for a new RRset, malformed records, the same
  subname and type twice), applied all or nothing, ``records: []`` deletes;
- records stored in canonical form as deSEC does (dnspython: lower-case hex, split in
  128-character chunks);
- throttling in a sliding window (reads 10/s, RRset writes 2/s per domain by default)
  with 429 {"detail": "Request was throttled. Expected available in N seconds."} and
  ``Retry-After``.
Fault injection: ``fail_next("429"|"500"|"503"|"malformed"|"timeout")``.  Requests are
counted by endpoint.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from fakehttp import FakeServer, JsonHandler

NOW = "2026-11-25T00:00:00.000000Z"
PAGE = 500


@dataclass
class FakeDomain:
    name: str
    minimum_ttl: int = 3600
    rrsets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


class FakeDesec(FakeServer):
    """The API state and its HTTP server on 127.0.0.1."""

    def __init__(self, token: str = "desec-test-token-0123456789abcdef") -> None:
        self.token = token
        self.domains: dict[str, FakeDomain] = {}
        self.counts: Counter[str] = Counter()
        self.faults: list[tuple[str, dict[str, Any]]] = []
        self.before_patch: list[Any] = []
        #: (name, limit, seconds, applies to) sliding windows; deSEC's per-second rates by default
        self.limits = [("dns_api_cheap", 10, 1.0, "read"), ("dns_api_per_domain_expensive", 2, 1.0, "write")]
        self.history: dict[str, deque[float]] = {}
        self.lock = threading.Lock()
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def add_domain(self, name: str, minimum_ttl: int = 3600) -> FakeDomain:
        self.domains[name] = FakeDomain(name, minimum_ttl)
        return self.domains[name]

    def set_rrset(self, domain: str, subname: str, records: list[str], ttl: int = 3600) -> None:
        """Someone else's edit (the web interface), stored canonically like any write."""
        with self.lock:
            zone = self.domains[domain]
            if records:
                zone.rrsets[(subname, "TLSA")] = {"ttl": ttl, "records": sorted(canonical("TLSA", r) for r in records)}
            else:
                zone.rrsets.pop((subname, "TLSA"), None)

    def fail_next(self, kind: str, **options: Any) -> None:
        """The next request (``only="PATCH"``: the next bulk write) fails this way."""
        self.faults.append((kind, options))

    def _throttled(self, kind: str, domain: str) -> float | None:
        now = time.monotonic()
        for name, limit, seconds, applies in self.limits:
            if applies != kind:
                continue
            key = f"{name}:{domain if kind == 'write' else ''}"
            window = self.history.setdefault(key, deque())
            while window and now - window[0] >= seconds:
                window.popleft()
            if len(window) >= limit:
                return seconds - (now - window[0])
        for name, _limit, _seconds, applies in self.limits:
            if applies == kind:
                self.history.setdefault(f"{name}:{domain if kind == 'write' else ''}", deque()).append(now)
        return None

    # -- HTTP ----------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(JsonHandler):
            def _fault(self, method: str) -> bool:
                if not fake.faults:
                    return False
                kind, options = fake.faults[0]
                if options.get("only") and options["only"] != method:
                    return False
                fake.faults.pop(0)
                if kind == "429":
                    wait = options.get("retry_after", 1)
                    self._send(429, {"detail": f"Request was throttled. Expected available in {wait} seconds."},
                               {"Retry-After": str(wait)})
                elif kind in ("500", "502", "503"):
                    self._send(int(kind), None, raw=b"<h1>Server Error</h1>")
                elif kind == "malformed":
                    self._send(200, None, raw=b'[{"subname": "x", ')
                elif kind == "timeout":
                    time.sleep(float(options.get("seconds", 2)))
                    self._send(504, None, raw=b"")
                return True

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                parts = [unquote(p) for p in url.path.split("/") if p][2:]  # drop api/v1
                query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
                shape = "/".join(["domains", "{name}", "rrsets", "{subname}", "{type}"][: len(parts)])
                key = f"{method} /{shape}/"
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with fake.lock:
                    fake.counts[key] += 1
                    if method == "PATCH":
                        hooks, fake.before_patch[:] = list(fake.before_patch), []
                    else:
                        hooks = []
                for hook in hooks:  # someone else's edit, just before ours arrives
                    hook()
                with fake.lock:
                    if self._fault(method):
                        return
                    auth = self.headers.get("Authorization")
                    if not auth:
                        self._send(401, {"detail": "Authentication credentials were not provided."})
                        return
                    if auth != f"Token {fake.token}":
                        self._send(401, {"detail": "Invalid token."})
                        return
                    domain = parts[1] if len(parts) > 1 else ""
                    wait = fake._throttled("write" if method != "GET" else "read", domain)
                    if wait is not None:
                        seconds = max(1, math.ceil(wait))
                        self._send(429, {"detail": f"Request was throttled. Expected available in {seconds} "
                                                   f"second{'s' if seconds != 1 else ''}."}, {"Retry-After": str(seconds)})
                        return
                    try:
                        body = json.loads(raw) if raw else None
                    except ValueError:
                        self._send(400, {"detail": "JSON parse error"})
                        return
                    self._dispatch(method, parts, query, body)

            def _dispatch(self, method: str, parts: list[str], query: dict[str, str], body: Any) -> None:
                if parts == ["domains"] and method == "GET":
                    qname = query.get("owns_qname", "").rstrip(".").lower()
                    names = [d for d in fake.domains if not qname or qname == d or qname.endswith("." + d)]
                    best = sorted(names, key=len, reverse=True)[:1] if qname else sorted(names)
                    self._paged([_domain_json(fake.domains[n]) for n in best], f"{fake.base_url}/domains/", query)
                    return
                if len(parts) < 2 or parts[0] != "domains" or parts[1] not in fake.domains:
                    self._send(404, {"detail": "Not found."})
                    return
                domain = fake.domains[parts[1]]
                rest = parts[2:]
                if rest == [] and method == "GET":
                    self._send(200, _domain_json(domain))
                elif rest == ["rrsets"] and method == "GET":
                    self._list(domain, query)
                elif len(rest) == 3 and rest[0] == "rrsets" and method == "GET":
                    rrset = domain.rrsets.get((rest[1] if rest[1] != "@" else "", rest[2]))
                    if rrset is None:
                        self._send(404, {"detail": "Not found."})
                    else:
                        self._send(200, _rrset_json(domain, rest[1], rest[2], rrset))
                elif rest == ["rrsets"] and method == "PATCH":
                    self._bulk_patch(domain, body)
                else:
                    self._send(405, {"detail": f'Method "{method}" not allowed.'})

            def _list(self, domain: FakeDomain, query: dict[str, str]) -> None:
                items = sorted(domain.rrsets.items())
                if "type" in query:
                    items = [i for i in items if i[0][1] == query["type"]]
                if "subname" in query:
                    items = [i for i in items if i[0][0] == query["subname"]]
                docs = [_rrset_json(domain, s, t, r) for (s, t), r in items]
                self._paged(docs, f"{fake.base_url}/domains/{quote(domain.name)}/rrsets/", query)

            def _paged(self, docs: list[Any], base: str, query: dict[str, str]) -> None:
                """deSEC's cursor pagination of a listing (RRsets, domains): 500 a page."""
                keep = {k: v for k, v in query.items() if k != "cursor"}

                def link(cursor: int | str) -> str:
                    return base + "?" + "&".join([f"{k}={quote(v)}" for k, v in keep.items()] + [f"cursor={cursor}"])

                if "cursor" not in query:
                    if len(docs) > PAGE:
                        self._send(400, {"detail": f"Pagination required. You can query up to {PAGE} items at a time "
                                                   "([...]). For more information, see https://desec.readthedocs.io/"
                                                   "en/latest/dns/rrsets.html#pagination"},
                                   {"Link": f'<{link("")}>; rel="first"'})
                        return
                    self._send(200, docs)
                    return
                start = int(query["cursor"] or 0)
                links = [f'<{link("")}>; rel="first"']
                if start > 0:
                    links.append(f'<{link(max(0, start - PAGE) or "")}>; rel="prev"')
                if start + PAGE < len(docs):
                    links.append(f'<{link(start + PAGE)}>; rel="next"')
                self._send(200, docs[start: start + PAGE], {"Link": ", ".join(links)})

            def _bulk_patch(self, domain: FakeDomain, body: Any) -> None:
                if not isinstance(body, list):
                    self._send(400, {"non_field_errors": [f'Expected a list of items but got type "{type(body).__name__}".']})
                    return
                errors: list[dict[str, list[str]]] = []
                staged = {k: dict(v) for k, v in domain.rrsets.items()}
                seen: dict[tuple[str, str], int] = {}
                for index, item in enumerate(body):
                    problem: dict[str, list[str]] = {}
                    key = (str(item.get("subname", "")), str(item.get("type", "")))
                    if key in seen:
                        problem["non_field_errors"] = [f"Same subname and type as in position(s) {seen[key]}, "
                                                       "but must be unique."]
                    seen.setdefault(key, index)
                    if not item.get("type") or item["type"] != item["type"].upper():
                        problem["type"] = ["This field is required." if not item.get("type") else
                                           "Record type must be all uppercase."]
                    records = item.get("records")
                    ttl = item.get("ttl")
                    if ttl is None and key not in staged and records:
                        problem["ttl"] = ["This field is required."]
                    elif ttl is not None:
                        if not isinstance(ttl, int):
                            problem["ttl"] = ["A valid integer is required."]
                        elif ttl < domain.minimum_ttl:
                            problem["ttl"] = [f"Ensure this value is greater than or equal to {domain.minimum_ttl}."]
                        elif ttl > 86400:
                            problem["ttl"] = ["Ensure this value is less than or equal to 86400."]
                    canon: list[str] = []
                    for value in records or []:
                        try:
                            canon.append(canonical(key[1], str(value)))
                        except (dns.exception.DNSException, ValueError) as exc:
                            problem.setdefault("records", []).append(
                                f"Record content for type {key[1]} malformed: {exc}")
                    errors.append(problem)
                    if problem:
                        continue
                    if records == []:
                        staged.pop(key, None)
                    elif records is not None:
                        staged[key] = {"ttl": ttl if ttl is not None else staged[key]["ttl"],
                                       "records": sorted(set(canon))}
                    elif key in staged and ttl is not None:
                        staged[key]["ttl"] = ttl
                if any(errors):
                    self._send(400, errors)  # all or nothing: nothing was changed
                    return
                domain.rrsets = staged
                out = [_rrset_json(domain, s, t, staged[(s, t)]) for s, t in
                       ((str(i.get("subname", "")), str(i["type"])) for i in body) if (s, t) in staged]
                self._send(200, out)

            def do_GET(self) -> None:
                self._route("GET")

            def do_PATCH(self) -> None:
                self._route("PATCH")

        return Handler


def canonical(rdtype: str, value: str) -> str:
    """A record in deSEC's stored form: parsed and printed again by dnspython."""
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), value)
    return str(rdata.to_text())


def _domain_json(domain: FakeDomain) -> dict[str, Any]:
    return {"created": NOW, "published": NOW, "name": domain.name, "minimum_ttl": domain.minimum_ttl,
            "touched": NOW}


def _rrset_json(domain: FakeDomain, subname: str, rdtype: str, rrset: dict[str, Any]) -> dict[str, Any]:
    name = f"{subname}.{domain.name}." if subname else f"{domain.name}."
    return {"created": NOW, "domain": domain.name, "subname": subname, "name": name, "type": rdtype,
            "records": list(rrset["records"]), "ttl": rrset["ttl"], "touched": NOW}
