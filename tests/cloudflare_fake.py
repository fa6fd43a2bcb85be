"""A faithful local fake of the Cloudflare v4 API, for the real `cloudflare` SDK.

Stateful zones and records; pagination with ``result_info``; the batch endpoint
applying deletes, patches, puts, posts in that order, all or nothing; the error
envelope with real HTTP status codes and Cloudflare error codes (81058 identical
record, 81044 record not found, 10000 authentication, 9109 invalid token, 1004
validation); DNSSEC status; Retry-After on 429.  Fault injection: ``fail_next``.
Every request is counted by endpoint so tests and benchmarks can assert counts.
"""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from fakehttp import FakeServer, JsonHandler

NOW = "2026-11-25T00:00:00.000000Z"


@dataclass
class FakeZone:
    id: str
    name: str
    dnssec: str = "active"
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


class FakeCloudflare(FakeServer):
    """The API state and its HTTP server on 127.0.0.1."""

    def __init__(self, token: str = "test-token-0123456789") -> None:
        self.token = token
        self.zones: dict[str, FakeZone] = {}
        self.counts: Counter[str] = Counter()
        self.faults: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.before_batch: list[Any] = []
        self.seq = itertools.count(1)
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/client/v4"

    def add_zone(self, name: str, dnssec: str = "active") -> FakeZone:
        zone = FakeZone(uuid.uuid4().hex, name, dnssec)
        self.zones[zone.id] = zone
        return zone

    def zone(self, name: str) -> FakeZone:
        return next(z for z in self.zones.values() if z.name == name)

    def add_record(self, zone: FakeZone, name: str, content: str, ttl: int = 300, comment: str | None = None) -> str:
        usage, selector, mtype, cert = content.split()
        body = {"type": "TLSA", "name": name, "ttl": ttl, "comment": comment,
                "data": {"usage": int(usage), "selector": int(selector), "matching_type": int(mtype),
                         "certificate": cert}}
        return str(self._create(zone, body)["id"])

    def fail_next(self, kind: str, **options: Any) -> None:
        """Make the next request fail: "429", "500", "502", "malformed", "auth" (``only="batch"``: that endpoint)."""
        self.faults.append((kind, options))

    # -- state ---------------------------------------------------------------

    def _record_json(self, zone: FakeZone, rec: dict[str, Any]) -> dict[str, Any]:
        data = rec["data"]
        return {
            "id": rec["id"], "zone_id": zone.id, "zone_name": zone.name, "name": rec["name"], "type": "TLSA",
            "content": f"{data['usage']} {data['selector']} {data['matching_type']} {data['certificate']}",
            # Cloudflare's schema makes these numbers; the SDK parses them as floats.
            "data": {"usage": float(data["usage"]), "selector": float(data["selector"]),
                     "matching_type": float(data["matching_type"]), "certificate": data["certificate"]},
            "ttl": float(rec["ttl"]), "proxiable": False, "proxied": False, "comment": rec.get("comment"),
            "tags": [], "settings": {}, "meta": {}, "created_on": NOW, "modified_on": NOW,
        }

    def _validate(self, body: dict[str, Any]) -> dict[str, Any] | None:
        data = body.get("data") or {}
        if body.get("type") != "TLSA" or not body.get("name"):
            return {"code": 1004, "message": "DNS Validation Error"}
        try:
            cert = str(data["certificate"])
            int(cert, 16)
            if not all(0 <= int(data[k]) <= 255 for k in ("usage", "selector", "matching_type")):
                raise ValueError
        except (KeyError, ValueError, TypeError):
            return {"code": 9010, "message": "TLSA record content is invalid"}
        return None

    def _same(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        da, db = a["data"], b["data"]
        return (a["name"].lower() == b["name"].lower()
                and all(int(da[k]) == int(db[k]) for k in ("usage", "selector", "matching_type"))
                and da["certificate"].lower() == db["certificate"].lower())

    def _create(self, zone: FakeZone, body: dict[str, Any]) -> dict[str, Any]:
        rec = {"id": uuid.uuid4().hex, "name": body["name"].rstrip(".").lower(), "ttl": int(body.get("ttl", 1)),
               "comment": body.get("comment"), "data": dict(body["data"])}
        zone.records[rec["id"]] = rec
        return rec

    # -- HTTP ----------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(JsonHandler):
            def _error(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> None:
                self._send(status, {"success": False, "errors": [{"code": code, "message": message}],
                                    "messages": [], "result": None}, headers)

            def _ok(self, result: Any, info: dict[str, Any] | None = None) -> None:
                doc = {"success": True, "errors": [], "messages": [], "result": result}
                if info is not None:
                    doc["result_info"] = info
                self._send(200, doc)

            def _fault(self, key: str) -> bool:
                if not fake.faults:
                    return False
                kind, options = fake.faults[0]
                if options.get("only") and options["only"] not in key:
                    return False
                fake.faults.pop(0)
                if kind == "429":
                    self._error(429, 10000 + 971, "Rate limited",
                                {"Retry-After": str(options.get("retry_after", 1))})
                elif kind in ("500", "502", "503"):
                    self._error(int(kind), 10002, "Internal server error")
                elif kind == "malformed":
                    self._send(200, None, raw=b'{"success": true, "result": [{"id": 7')
                elif kind == "auth":
                    self._error(403, 10000, "Authentication error")
                return True

            def _auth(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._error(403, 9109 if self.headers.get("Authorization") else 10000,
                                "Invalid access token" if self.headers.get("Authorization") else "Authentication error")
                    return False
                return True

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                parts = [p for p in url.path.split("/") if p][2:]  # drop client/v4
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                key = f"{method} /" + "/".join("{id}" if len(p) == 32 else p for p in parts)
                with fake.lock:
                    fake.counts[key] += 1
                    if self._fault(key) or not self._auth():
                        return
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length) or b"null") if length else None
                    self._dispatch(method, parts, query, body)

            def _page(self, items: list[Any], query: dict[str, str]) -> None:
                per_page = int(float(query.get("per_page", 100)))
                page = int(float(query.get("page", 1)))
                chunk = items[(page - 1) * per_page: page * per_page]
                total_pages = max(1, -(-len(items) // per_page))
                self._ok(chunk, {"page": page, "per_page": per_page, "count": len(chunk),
                                 "total_count": len(items), "total_pages": total_pages})

            def _dispatch(self, method: str, parts: list[str], query: dict[str, str], body: Any) -> None:
                if parts == ["zones"] and method == "GET":
                    zones = [z for z in fake.zones.values() if not query.get("name") or z.name == query["name"]]
                    self._page([_zone_json(z) for z in zones], query)
                    return
                if len(parts) < 2 or parts[0] != "zones" or parts[1] not in fake.zones:
                    self._error(404, 7003, "Could not route to /zones/..., perhaps your object identifier is invalid?")
                    return
                zone = fake.zones[parts[1]]
                rest = parts[2:]
                if rest == ["dnssec"] and method == "GET":
                    self._ok({"status": zone.dnssec, "modified_on": NOW})
                elif rest == ["dns_records"] and method == "GET":
                    recs = sorted(zone.records.values(), key=lambda r: (r["name"], r["data"]["certificate"]))
                    if "type" in query:
                        recs = [r for r in recs if query["type"] == "TLSA"]
                    if "name.exact" in query:
                        recs = [r for r in recs if r["name"] == query["name.exact"].rstrip(".").lower()]
                    self._page([fake._record_json(zone, r) for r in recs], query)
                elif rest == ["dns_records", "batch"] and method == "POST":
                    self._batch(zone, body or {})
                else:
                    self._error(405, 10405, "Method not allowed")

            def _batch(self, zone: FakeZone, body: dict[str, Any]) -> None:
                for hook in list(fake.before_batch):
                    hook(zone)
                fake.before_batch.clear()
                staged = {k: dict(v) for k, v in zone.records.items()}
                index = {_key(r) for r in staged.values()}
                result: dict[str, list[Any]] = {"deletes": [], "patches": [], "puts": [], "posts": []}
                for item in body.get("deletes") or []:
                    rec = staged.pop(item.get("id", ""), None)
                    if rec is None:
                        self._error(400, 81044, "Record does not exist.")
                        return  # all or nothing: nothing was changed
                    index.discard(_key(rec))
                    result["deletes"].append(fake._record_json(zone, rec))
                for item in body.get("posts") or []:
                    problem = fake._validate(item)
                    if problem:
                        self._error(400, problem["code"], problem["message"])
                        return
                    if _key(item) in index:
                        self._error(400, 81058, "An identical record already exists.")
                        return
                    rec = {"id": uuid.uuid4().hex, "name": item["name"].rstrip(".").lower(),
                           "ttl": int(item.get("ttl", 1)), "comment": item.get("comment"), "data": dict(item["data"])}
                    staged[rec["id"]] = rec
                    index.add(_key(rec))
                    result["posts"].append(fake._record_json(zone, rec))
                zone.records = staged
                self._ok(result)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

        return Handler


def _key(rec: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two TLSA records identical to Cloudflare (81058): name and data, hex in any case."""
    data = rec["data"]
    return (str(rec["name"]).rstrip(".").lower(), int(data["usage"]), int(data["selector"]),
            int(data["matching_type"]), str(data["certificate"]).lower())


def _zone_json(zone: FakeZone) -> dict[str, Any]:
    return {
        "id": zone.id, "name": zone.name, "status": "active", "paused": False, "type": "full",
        "development_mode": 0.0, "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
        "original_name_servers": None, "original_registrar": None, "original_dnshost": None,
        "created_on": NOW, "modified_on": NOW, "activated_on": NOW,
        "meta": {"cdn_only": False, "custom_certificate_quota": 0, "dns_only": False, "foundation_dns": False,
                 "page_rule_quota": 3, "phishing_detected": False, "step": 2},
        "owner": {"id": None, "name": None, "type": "user"},
        "account": {"id": "a" * 32, "name": "Test account"},
        "plan": {"id": "0" * 32, "can_subscribe": False, "currency": "USD", "externally_managed": False,
                 "frequency": "", "is_subscribed": True, "legacy_discount": False, "legacy_id": "free",
                 "name": "Free Website", "price": 0.0},
        "permissions": ["#dns_records:edit"], "vanity_name_servers": [],
    }
