"""A local fake of the Hetzner Cloud API's DNS endpoints, for the real ``hcloud`` SDK.

The endpoints the provider uses, as https://docs.hetzner.cloud/reference/cloud documents
them: ``GET /zones`` (``name`` filter, pagination in ``meta.pagination``),
``GET /zones/{id_or_name}``, ``GET /zones/{z}/rrsets`` (``type``, ``name``, ``page``,
``per_page``), ``GET /zones/{z}/rrsets/{name}/{type}``, ``POST /zones/{z}/rrsets``
(409 ``uniqueness_error`` if it exists, 422 ``incorrect_zone_mode`` on secondaries),
``POST .../actions/set_records`` and ``.../actions/change_ttl`` (423 ``protected`` if
the RRset is protected), and ``GET /actions/{id}`` (``running`` for a few polls, then
``success``).  Validation as documented: names lower case without the zone or a dot,
records non-empty and distinct, TTL 60..2^31-1.  Errors in the API's envelope
``{"error": {"code", "message", "details"}}`` with its status codes (401 unauthorized,
403 token_readonly, 404 not_found, 409 conflict, 429 rate_limit_exceeded).  The rate
limit is a bucket of 3,600 requests refilled one a second, reported in
``RateLimit-Limit/Remaining/Reset`` headers.  Fault injection: ``fail_next``.  Requests
are counted by endpoint.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from fakehttp import FakeServer, JsonHandler

NOW = "2026-11-25T00:00:00+00:00"
ERRORS = {"unauthorized": 401, "token_readonly": 403, "forbidden": 403, "not_found": 404, "invalid_input": 400,
          "uniqueness_error": 409, "conflict": 409, "incorrect_zone_mode": 422, "protected": 423, "locked": 423,
          "rate_limit_exceeded": 429, "server_error": 500, "service_error": 503}


@dataclass
class FakeZone:
    id: int
    name: str
    mode: str = "primary"
    ttl: int = 3600
    rrsets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


class FakeHetzner(FakeServer):
    """The API state and its HTTP server on 127.0.0.1."""

    def __init__(self, token: str = "hcloud-test-token-" + "x" * 46) -> None:
        self.token = token
        self.readonly_tokens: set[str] = set()
        self.zones: dict[int, FakeZone] = {}
        self.actions: dict[int, dict[str, Any]] = {}
        self.action_polls = 1  # polls that still say "running"
        self.min_ttl = 60
        self.counts: Counter[str] = Counter()
        self.faults: list[tuple[str, dict[str, Any]]] = []
        self.before_write: list[Any] = []
        self.bucket, self.capacity, self.refilled = 3600.0, 3600.0, time.monotonic()
        self.ids = itertools.count(1000)
        self.lock = threading.Lock()
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def add_zone(self, name: str, mode: str = "primary", ttl: int = 3600) -> FakeZone:
        zone = FakeZone(next(self.ids), name, mode, ttl)
        self.zones[zone.id] = zone
        return zone

    def zone(self, name: str) -> FakeZone:
        return next(z for z in self.zones.values() if z.name == name)

    def set_rrset(self, zone: str, name: str, values: list[str], ttl: int | None = 300,
                  comment: str | None = None, protected: bool = False) -> None:
        """Someone else's edit in the console."""
        with self.lock:
            target = self.zone(zone)
            if values:
                target.rrsets[(name, "TLSA")] = {"ttl": ttl, "protected": protected,
                                                 "records": [{"value": v, "comment": comment} for v in values]}
            else:
                target.rrsets.pop((name, "TLSA"), None)

    def fail_next(self, kind: str, **options: Any) -> None:
        """The next request (``only="POST"``: the next write) fails: an error code of the
        API ("rate_limit_exceeded", "conflict", "server_error", ...), "502", "malformed",
        or "action_error" (the write's action ends in error, nothing changed)."""
        self.faults.append((kind, options))

    def _take(self) -> tuple[bool, dict[str, str]]:
        now = time.monotonic()
        self.bucket = min(self.capacity, self.bucket + (now - self.refilled))
        self.refilled = now
        allowed = self.bucket >= 1
        if allowed:
            self.bucket -= 1
        headers = {"RateLimit-Limit": str(int(self.capacity)), "RateLimit-Remaining": str(int(self.bucket)),
                   "RateLimit-Reset": str(int(time.time() + (self.capacity - self.bucket)))}
        return allowed, headers

    def _action(self, command: str, zone: FakeZone, error: bool = False) -> dict[str, Any]:
        action: dict[str, Any] = {"id": next(self.ids), "command": command, "status": "running", "progress": 0,
                  "started": NOW, "finished": None, "resources": [{"id": zone.id, "type": "zone"}], "error": None,
                  "_polls": self.action_polls, "_error": error}
        self.actions[action["id"]] = action
        return _public(action)

    # -- HTTP ----------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(JsonHandler):
            def _error(self, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None) -> None:
                self._send(ERRORS[code], {"error": {"code": code, "message": message, "details": details or {}}},
                           headers)

            def _route(self, method: str) -> None:
                url = urlparse(self.path)
                parts = [unquote(p) for p in url.path.split("/") if p][1:]  # drop v1
                query = {k: v for k, v in parse_qs(url.query).items()}
                names = ["zones", "{zone}", "rrsets", "{name}", "{type}", "actions", parts[-1] if parts else ""]
                shape = "/".join(names[: len(parts)]) if parts[:1] == ["zones"] else "/".join(
                    ["actions", "{id}"][: len(parts)])
                key = f"{method} /{shape}"
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                hooks: list[Any] = []
                with fake.lock:
                    fake.counts[key] += 1
                    if method == "POST":
                        hooks, fake.before_write[:] = list(fake.before_write), []
                for hook in hooks:  # someone else's edit, just before ours arrives
                    hook()
                with fake.lock:
                    allowed, rate = fake._take()
                    if not allowed:
                        self._error("rate_limit_exceeded", "limit of 3600 requests per hour reached", headers=rate)
                        return
                    if self._fault(method, rate):
                        return
                    token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                    if token not in {fake.token, *fake.readonly_tokens}:
                        self._error("unauthorized", "unable to authenticate", headers=rate)
                        return
                    if method != "GET" and token in fake.readonly_tokens:
                        self._error("token_readonly", "The token is read-only and cannot perform this action",
                                    headers=rate)
                        return
                    try:
                        body = json.loads(raw) if raw else {}
                    except ValueError:
                        self._error("invalid_input", "invalid JSON")
                        return
                    self._dispatch(method, parts, query, body, rate)

            def _fault(self, method: str, rate: dict[str, str]) -> bool:
                if not fake.faults:
                    return False
                kind, options = fake.faults[0]
                if options.get("only") and options["only"] != method:
                    return False
                if kind == "action_error":
                    return False  # handled by the write itself
                fake.faults.pop(0)
                if kind in ERRORS:
                    self._error(kind, f"{kind} (injected by the test)", headers=rate)
                elif kind in ("502", "504"):
                    self._send(int(kind), None, raw=b"<html>Bad Gateway</html>")
                elif kind == "malformed":
                    self._send(200, None, raw=b'{"rrsets": [{"name": ')
                return True

            def _zone(self, key: str) -> FakeZone | None:
                for zone in fake.zones.values():
                    if key in (str(zone.id), zone.name):
                        return zone
                return None

            def _dispatch(self, method: str, parts: list[str], query: dict[str, list[str]], body: Any,
                          rate: dict[str, str]) -> None:
                if parts[:1] == ["actions"] and len(parts) == 2 and method == "GET":
                    action = fake.actions.get(int(parts[1])) if parts[1].isdigit() else None
                    if action is None:
                        self._error("not_found", "action not found")
                        return
                    if action["_polls"] > 0:
                        action["_polls"] -= 1
                    else:
                        action.update(status="error" if action["_error"] else "success", progress=100, finished=NOW,
                                      error={"code": "action_failed", "message": "zone update failed"}
                                      if action["_error"] else None)
                    self._send(200, {"action": _public(action)}, rate)
                    return
                if parts == ["zones"] and method == "GET":
                    zones = [z for z in fake.zones.values() if "name" not in query or z.name == query["name"][-1]]
                    self._page("zones", [_zone_json(z) for z in zones], query, rate)
                    return
                zone = self._zone(parts[1]) if len(parts) > 1 and parts[0] == "zones" else None
                if zone is None:
                    self._error("not_found", "zone not found", headers=rate)
                    return
                rest = parts[2:]
                if rest == [] and method == "GET":
                    self._send(200, {"zone": _zone_json(zone)}, rate)
                elif rest == ["rrsets"] and method == "GET":
                    items = sorted(zone.rrsets.items())
                    if "type" in query:
                        items = [i for i in items if i[0][1] in query["type"]]
                    if "name" in query:
                        items = [i for i in items if i[0][0] == query["name"][-1]]
                    self._page("rrsets", [_rrset_json(zone, n, t, r) for (n, t), r in items], query, rate)
                elif len(rest) == 3 and rest[0] == "rrsets" and method == "GET":
                    rrset = zone.rrsets.get((rest[1], rest[2]))
                    if rrset is None:
                        self._error("not_found", "rrset not found", headers=rate)
                    else:
                        self._send(200, {"rrset": _rrset_json(zone, rest[1], rest[2], rrset)}, rate)
                elif rest == ["rrsets"] and method == "POST":
                    self._create(zone, body, rate)
                elif len(rest) == 5 and rest[0] == "rrsets" and rest[3] == "actions" and method == "POST":
                    self._rrset_action(zone, (rest[1], rest[2]), rest[4], body, rate)
                else:
                    self._error("not_found", "no such endpoint", headers=rate)

            def _page(self, key: str, items: list[Any], query: dict[str, list[str]], rate: dict[str, str]) -> None:
                per_page = min(50, int(query.get("per_page", ["25"])[-1]))
                page = int(query.get("page", ["1"])[-1])
                last = max(1, -(-len(items) // per_page))
                self._send(200, {key: items[(page - 1) * per_page: page * per_page], "meta": {"pagination": {
                    "page": page, "per_page": per_page, "previous_page": page - 1 if page > 1 else None,
                    "next_page": page + 1 if page < last else None, "last_page": last,
                    "total_entries": len(items)}}}, rate)

            def _invalid(self, zone: FakeZone, name: Any, ttl: Any, records: Any) -> dict[str, list[str]]:
                fields: dict[str, list[str]] = {}
                if name is not None and (not isinstance(name, str) or name != name.lower() or name.endswith(".")
                                         or name.endswith(zone.name)):
                    fields["name"] = ["must be lower case, without a final dot or the zone name"]
                if ttl is not None and not (isinstance(ttl, int) and fake.min_ttl <= ttl <= 2147483647):
                    fields["ttl"] = [f"must be between {fake.min_ttl} and 2147483647"]
                if records is not None:
                    values = [r.get("value") for r in records if isinstance(r, dict)]
                    if not values or len(values) != len(records):
                        fields["records"] = ["must not be empty"]
                    elif len(set(values)) != len(values):
                        fields["records"] = ["must only contain distinct record values"]
                    for value in values:
                        try:
                            dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, str(value))
                        except (dns.exception.DNSException, ValueError):
                            fields.setdefault("records", []).append(f"invalid TLSA record value {value!r}")
                return fields

            def _write_allowed(self, zone: FakeZone, rate: dict[str, str]) -> bool:
                if zone.mode != "primary":
                    self._error("incorrect_zone_mode", "This operation is not supported for this Zone's mode.",
                                headers=rate)
                    return False
                return True

            def _action_error(self) -> bool:
                if fake.faults and fake.faults[0][0] == "action_error":
                    fake.faults.pop(0)
                    return True
                return False

            def _create(self, zone: FakeZone, body: dict[str, Any], rate: dict[str, str]) -> None:
                if not self._write_allowed(zone, rate):
                    return
                key = (str(body.get("name")), str(body.get("type")))
                invalid = self._invalid(zone, body.get("name"), body.get("ttl"), body.get("records"))
                if invalid:
                    self._error("invalid_input", "invalid input in fields " + ", ".join(invalid),
                                {"fields": [{"name": k, "messages": v} for k, v in invalid.items()]}, rate)
                    return
                if key in zone.rrsets:
                    self._error("uniqueness_error", "RRSet with the same name and type already exists",
                                headers=rate)
                    return
                failed = self._action_error()
                rrset = {"ttl": body.get("ttl"), "protected": False,
                         "records": [{"value": r["value"], "comment": r.get("comment")} for r in body["records"]]}
                if not failed:
                    zone.rrsets[key] = rrset
                self._send(201, {"rrset": _rrset_json(zone, *key, rrset),
                                 "action": fake._action("create_rrset", zone, failed)}, rate)

            def _rrset_action(self, zone: FakeZone, key: tuple[str, str], command: str, body: dict[str, Any],
                              rate: dict[str, str]) -> None:
                if not self._write_allowed(zone, rate):
                    return
                rrset = zone.rrsets.get(key)
                if rrset is None:
                    self._error("not_found", "rrset not found", headers=rate)
                    return
                if rrset["protected"]:
                    self._error("protected", "RRSet is protected against changes", headers=rate)
                    return
                if command == "set_records":
                    invalid = self._invalid(zone, None, None, body.get("records"))
                elif command == "change_ttl":
                    invalid = self._invalid(zone, None, body.get("ttl"), None)
                else:
                    self._error("not_found", "no such action", headers=rate)
                    return
                if invalid:
                    self._error("invalid_input", "invalid input in fields " + ", ".join(invalid),
                                {"fields": [{"name": k, "messages": v} for k, v in invalid.items()]}, rate)
                    return
                failed = self._action_error()
                if not failed and command == "set_records":
                    rrset["records"] = [{"value": r["value"], "comment": r.get("comment")} for r in body["records"]]
                elif not failed:
                    rrset["ttl"] = body.get("ttl")
                self._send(201, {"action": fake._action(f"{command}_rrset", zone, failed)}, rate)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

        return Handler


def _public(action: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in action.items() if not k.startswith("_")}


def _zone_json(zone: FakeZone) -> dict[str, Any]:
    return {"id": zone.id, "name": zone.name, "created": NOW, "mode": zone.mode, "ttl": zone.ttl, "labels": {},
            "protection": {"delete": False}, "status": "ok", "record_count": len(zone.rrsets) + 4,
            "registrar": "other", "primary_nameservers": [],
            "authoritative_nameservers": {"assigned": ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com.",
                                                       "helium.ns.hetzner.de."],
                                          "delegated": [], "delegation_last_check": NOW,
                                          "delegation_status": "valid"}}


def _rrset_json(zone: FakeZone, name: str, rdtype: str, rrset: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"{name}/{rdtype}", "name": name, "type": rdtype, "ttl": rrset["ttl"], "labels": {},
            "protection": {"change": rrset["protected"]}, "records": [dict(r) for r in rrset["records"]],
            "zone": zone.id}
