"""moto's Route 53 in server mode (real HTTP, the real boto3), made as strict as Route 53 itself.

moto 5 is a well-kept mock of Route 53, but two things a compare-and-swap relies on
are looser there than at AWS, so this module adds them to moto's Route 53 handler:

- a DELETE must name the RRset's current TTL and values exactly; moto only checks that
  such a change was once made (its change journal), so a DELETE of an RRset that has
  since been replaced passes and removes the new one.  Route 53 answers
  InvalidChangeBatch "... but the values provided do not match the current values".
- a CREATE of an RRset that already exists fails (InvalidChangeBatch "... but it already
  exists"); moto adds a second RRset of the same name and type.
- a change is PENDING first and INSYNC later (GetChange); moto says INSYNC at once.

It also counts requests per API action (for tests and docs/performance.md) and can
fail the next request with a service error code (``fail_next``).
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from typing import Any

import boto3
import requests
from moto.core.responses import ActionResult
from moto.route53.exceptions import Route53ClientError
from moto.route53.responses import Route53 as Route53Response
from moto.server import ThreadedMotoServer

ACTIONS = ("list_hosted_zones", "list_hosted_zones_by_name", "get_hosted_zone", "list_resource_record_sets",
           "change_resource_record_sets", "get_change")


class _Fault(Route53ClientError):
    def __init__(self, code: str) -> None:
        super().__init__(code, f"{code} (injected by the test)")


class StrictRoute53:
    """The moto server on 127.0.0.1 with Route 53's strict change semantics."""

    def __init__(self, monkeypatch: Any, pending_polls: int = 1) -> None:
        self.counts: Counter[str] = Counter()
        #: the test zone's id, once a test made it (``add_zone``)
        self.zone_id = ""
        self.faults: list[tuple[str, str, bool]] = []
        self.pending_polls = pending_polls
        self.before_change: list[Any] = []
        self._pending: dict[str, int] = {}
        self._ids = itertools.count(1)
        self.lock = threading.Lock()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._patch(monkeypatch)

    @property
    def endpoint(self) -> str:
        host, port = self.server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> StrictRoute53:
        self.server.start()
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10)
        return self

    def stop(self) -> None:
        self.server.stop()

    def client(self) -> Any:
        """An independent client (the test's own read-back and "someone else" edits)."""
        return boto3.client("route53", region_name="us-east-1", endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def add_zone(self, name: str, private: bool = False) -> str:
        kwargs: dict[str, Any] = {"Name": name, "CallerReference": f"{name}-{next(self._ids)}"}
        if private:
            kwargs.update(VPC={"VPCRegion": "us-east-1", "VPCId": "vpc-12345678"},
                          HostedZoneConfig={"PrivateZone": True, "Comment": "private"})
        return str(self.client().create_hosted_zone(**kwargs)["HostedZone"]["Id"]).rsplit("/", 1)[-1]

    def fail_next(self, code: str, only: str = "", after: bool = False) -> None:
        """The next request (of action ``only``, if given) fails with this error code;
        ``after``: it is carried out first and only its answer fails (a lost answer)."""
        self.faults.append((code, only, after))

    # -- the additions to moto's handler ----------------------------------------

    def _patch(self, monkeypatch: Any) -> None:
        fake = self
        for action in ACTIONS:
            original = getattr(Route53Response, action)

            def wrapped(handler: Route53Response, _original: Any = original, _action: str = action) -> Any:
                if _action == "change_resource_record_sets":  # someone else's edit, just before ours
                    hooks, fake.before_change[:] = list(fake.before_change), []
                    for hook in hooks:
                        hook()
                with fake.lock:
                    fake.counts[_action] += 1
                    fault = next((f for f in fake.faults if not f[1] or f[1] == _action), None)
                    if fault is not None:
                        fake.faults.remove(fault)
                        if not fault[2]:
                            raise _Fault(fault[0])
                    result = getattr(fake, f"_{_action}", lambda h, o: o(h))(handler, _original)
                    if fault is not None:
                        raise _Fault(fault[0])
                    return result

            monkeypatch.setattr(Route53Response, action, wrapped)

    def _change_resource_record_sets(self, handler: Route53Response, original: Any) -> ActionResult:
        zone = handler.backend.get_hosted_zone(handler._get_param("HostedZoneId"))
        state = {(r.name.lower(), r.type): (r.ttl, sorted(r.records or [])) for r in zone.rrsets}
        for change in handler._get_param("ChangeBatch.Changes"):
            rrset = change["ResourceRecordSet"]
            key = (rrset["Name"].lower().rstrip(".") + ".", rrset["Type"])
            values = sorted(r["Value"] for r in rrset.get("ResourceRecords") or [])
            where = f"[name='{key[0]}', type='{key[1]}']"
            if change["Action"] == "CREATE":
                if key in state:
                    raise Route53ClientError(
                        "InvalidChangeBatch", f"Tried to create resource record set {where} but it already exists")
                state[key] = (int(rrset["TTL"]), values)
            elif change["Action"] == "DELETE":
                if key not in state:
                    raise Route53ClientError(
                        "InvalidChangeBatch", f"Tried to delete resource record set {where} but it was not found")
                if state[key] != (int(rrset["TTL"]), values):
                    raise Route53ClientError(
                        "InvalidChangeBatch", f"Tried to delete resource record set {where} but the values "
                        "provided do not match the current values")
                del state[key]
        result = original(handler)
        change_id = f"/change/C{next(self._ids):012d}"
        self._pending[change_id] = self.pending_polls
        info = dict(result.result["ChangeInfo"], Id=change_id, Status="PENDING" if self.pending_polls else "INSYNC")
        return ActionResult({"ChangeInfo": info})

    def _get_change(self, handler: Route53Response, original: Any) -> ActionResult:
        result = original(handler)
        change_id = str(result.result["ChangeInfo"]["Id"])
        change_id = change_id if change_id.startswith("/change/") else f"/change/{change_id}"
        left = self._pending.get(change_id, 0)
        if left:
            self._pending[change_id] = left - 1
        status = "PENDING" if left > 1 else "INSYNC"
        return ActionResult({"ChangeInfo": dict(result.result["ChangeInfo"], Id=change_id, Status=status)})


def read_tlsa(client: Any, zone_id: str, owner: str) -> tuple[list[str], int | None]:
    """The test's own read-back: the raw values and TTL at ``owner``."""
    page = client.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=owner,
                                            StartRecordType="TLSA", MaxItems="1")
    for rrset in page["ResourceRecordSets"]:
        if rrset["Name"].lower() == owner.lower() and rrset["Type"] == "TLSA":
            return [r["Value"] for r in rrset["ResourceRecords"]], int(rrset["TTL"])
    return [], None


def upsert_tlsa(client: Any, zone_id: str, owner: str, values: list[str], ttl: int = 300) -> None:
    """Someone else's edit, made with boto3 directly (UPSERT: no compare-and-swap)."""
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": owner, "Type": "TLSA", "TTL": ttl,
                                                 "ResourceRecords": [{"Value": v} for v in values]}}]})
