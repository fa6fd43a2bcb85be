"""Amazon Route 53 through ``boto3`` (the optional extra ``route53``, imported only when used).

- The hosted zone is given as ``hosted_zone_id``, or the longest public hosted zone
  holding the host, from ListHostedZones once per run (private zones are skipped:
  DANE needs public DNS).
- Reads: one owner is one ListResourceRecordSets starting at that name and type;
  several owners list the zone page by page (300 record sets a page) until
  ``IsTruncated`` is false.
- Writes: one ChangeResourceRecordSets per zone (split only past Route 53's 1,000
  records a batch, each owner's pair whole).  Per owner: DELETE of the exact RRset
  read (name, type, TTL and every value as Route 53 returned them), then CREATE of the
  new set.  Route 53 applies a batch all or nothing and fails a DELETE whose values
  differ from the current ones, so this is a true compare-and-swap: an edit by someone
  else between our read and our write makes the whole batch fail (InvalidChangeBatch),
  nothing is applied, and we re-read to tell "changed by someone" from "our own retried
  batch already went through".
- After a write we wait on GetChange until INSYNC (all Route 53 servers serve it) before
  the engine starts observing; bounded by ``change_timeout``.
- Throttling (5 requests/s per account) and PriorRequestNotComplete are retried by
  botocore's "standard" mode with backoff, ``max_attempts`` in all.
- Credentials: ``access_key_id`` with the secret from ``secret_access_key_file``,
  ``secret_access_key_env`` or ``secret_access_key`` in a 0600 config; otherwise boto3's
  own chain (``profile``, the environment, ~/.aws/credentials, an instance role).
  Never printed, logged or put in an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import dns.name

from tlsa_manager import provider_settings as shared
from tlsa_manager.configvalues import int_value
from tlsa_manager.durations import positive_seconds
from tlsa_manager.endpoints import enclosing, parent_domain
from tlsa_manager.errors import ConfigError, ProviderConflict, ProviderError
from tlsa_manager.provider import Capabilities, OwnerChange, RRset, close_once
from tlsa_manager.secrets import ProviderSecret
from tlsa_manager_providers._rrsets import MAX_TTL, ZonedProvider, parse_values, presentation, target

log = logging.getLogger(__name__)
PAGE = 300  # ListResourceRecordSets' largest page
BATCH_RECORDS = 1000  # ResourceRecord elements Route 53 accepts in one change batch
SECRET = ProviderSecret("secret_access_key", "secret access key", "AWS", "AWS_SECRET_ACCESS_KEY")


class Route53Provider(ZonedProvider):
    """Route 53, one compare-and-swap change batch per hosted zone."""

    name = "route53"
    service = "Route 53"
    capabilities = Capabilities(
        atomic=True, compare_and_swap=True, eventual_propagation=True, min_ttl=0, can_list_nameservers=False
    )
    secret_settings: ClassVar[Mapping[str, str]] = SECRET.declared()
    settings: ClassVar[Mapping[str, str]] = {
        "hosted_zone_id": "the hosted zone's id (skips the zone lookup and its permission)",
        "zone": "the zone name (with hosted_zone_id)",
        "profile": "AWS profile in ~/.aws/credentials or ~/.aws/config",
        "access_key_id": "access key id (its secret from secret_access_key_file or _env)",
        **SECRET.options(),
        "endpoint_url": "API endpoint (default AWS's; e.g. a local test server)",
        "max_attempts": "attempts per request incl. throttling retries (default 5)",
        "change_poll_seconds": "seconds between GetChange polls (default 5)",
        "change_timeout": "longest wait for a change to be INSYNC, seconds (default 600)",
        **shared.nameservers(),
    }

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self._secret: str | None = None
        if config.get("access_key_id"):
            self._secret = self.secret(SECRET)
        elif any(config.get(k) for k in self.secret_keys()):
            raise ConfigError(
                f"provider {config.get('name', self.name)}: a secret access key needs access_key_id",
                "set access_key_id, or use profile / the environment",
            )
        self.poll = positive_seconds(config.get("change_poll_seconds", 5), "route53 change_poll_seconds")
        self.change_timeout = positive_seconds(config.get("change_timeout", 600), "route53 change_timeout")
        self.max_attempts = int_value(config.get("max_attempts", 5), "route53 max_attempts", 1, 100, "5")
        self._client: Any = None
        self._public: dict[str, tuple[str, str]] | None = None

    # -- SDK ----------------------------------------------------------------

    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session(
                profile_name=self.config.get("profile") or None,
                aws_access_key_id=self.config.get("access_key_id") or None,
                aws_secret_access_key=self._secret,
            )
            retries: Any = {"mode": "standard", "total_max_attempts": self.max_attempts}
            self._client = session.client(
                "route53",
                region_name="us-east-1",  # Route 53 is global; its API lives in us-east-1
                endpoint_url=self.config.get("endpoint_url") or None,
                config=Config(retries=retries, connect_timeout=10, read_timeout=30),
            )
            # every HTTP request, botocore's retries included (provider.requests)
            self._client.meta.events.register("before-send.route-53", self._count)
        return self._client

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        """One API call; every SDK exception becomes one ProviderError line (never the key)."""
        import botocore.exceptions as bx

        try:
            return getattr(self.client(), method)(**kwargs)
        except bx.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "?"))
            message = str(exc.response.get("Error", {}).get("Message", ""))[:200]
            if code == "InvalidChangeBatch":
                raise _BatchRejected(message) from None
            if code in (
                "AccessDenied",
                "AccessDeniedException",
                "InvalidClientTokenId",
                "SignatureDoesNotMatch",
                "UnrecognizedClientException",
                "ExpiredToken",
            ):
                raise ProviderError(
                    f"Route 53 refused the credentials for {what} ({code})",
                    "check the key and that its policy allows this action on the zone",
                ) from None
            if code in ("NoSuchHostedZone", "NoSuchChange"):
                raise ProviderError(
                    f"Route 53: {message or code} during {what}", "check hosted_zone_id"
                ) from None
            if code in ("Throttling", "PriorRequestNotComplete"):
                raise ProviderError(
                    f"Route 53 kept throttling {what} ({code})", "run again later, or raise max_attempts"
                ) from None
            raise ProviderError(
                f"Route 53 rejected {what} ({code}: {message})", "check the request"
            ) from None
        except (bx.NoCredentialsError, bx.PartialCredentialsError):
            raise ConfigError(
                "no AWS credentials for Route 53", "set profile, or access_key_id with secret_access_key_file"
            ) from None
        except bx.ProfileNotFound:
            raise ConfigError(
                f"AWS profile {self.config.get('profile')!r} does not exist", "check ~/.aws/credentials"
            ) from None
        except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError):
            raise ProviderError(f"cannot reach the Route 53 API for {what}", "check the network") from None
        except bx.BotoCoreError as exc:
            raise ProviderError(
                f"Route 53 call {what} failed ({type(exc).__name__})", "run again with --debug"
            ) from None

    # -- zones --------------------------------------------------------------

    def zone_for(self, owner: dns.name.Name) -> tuple[str, str]:
        """(hosted zone id, zone name with trailing dot) holding ``owner``."""
        if self.config.get("hosted_zone_id"):
            zone = str(self.config.get("zone") or parent_domain(owner).to_text())
            return _zone_id(str(self.config["hosted_zone_id"])), zone.rstrip(".").lower() + "."
        if self._public is None:
            self._public = self._list_zones()
        found = enclosing(owner, self._public.get)
        if found is None:
            raise ProviderError(
                f"no public Route 53 hosted zone holds {owner} for these credentials",
                "create the zone, or set hosted_zone_id",
            )
        return found

    def _list_zones(self) -> dict[str, tuple[str, str]]:
        """The public hosted zones of the account by name, once per run (100 a request);
        private zones are left out: DANE needs public DNS."""
        zones: dict[str, tuple[str, str]] = {}
        kwargs: dict[str, Any] = {"MaxItems": "100"}
        while True:
            page = self._call("listing hosted zones", "list_hosted_zones", **kwargs)
            for zone in page.get("HostedZones", []):
                if not zone.get("Config", {}).get("PrivateZone"):
                    zones.setdefault(
                        zone["Name"].rstrip(".").lower(), (_zone_id(zone["Id"]), zone["Name"].lower())
                    )
            if not page.get("IsTruncated"):
                return zones
            kwargs["Marker"] = page["NextMarker"]

    # -- read ---------------------------------------------------------------

    def listing(self, zone_id: str, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, dict[str, Any]]:
        """The raw TLSA record set of each owner (absent owners left out)."""
        wanted = {o.to_text().lower(): o for o in owners}
        out: dict[dns.name.Name, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"HostedZoneId": zone_id, "MaxItems": str(PAGE)}
        if len(owners) == 1:
            kwargs.update(StartRecordName=owners[0].to_text(), StartRecordType="TLSA", MaxItems="1")
        while True:
            page = self._call("listing record sets", "list_resource_record_sets", **kwargs)
            for rrset in page.get("ResourceRecordSets", []):
                owner = wanted.get(_unescape(rrset["Name"]).lower())
                if owner is not None and rrset["Type"] == "TLSA" and "SetIdentifier" not in rrset:
                    out[owner] = rrset
            if len(owners) == 1 or not page.get("IsTruncated"):
                return out
            kwargs.update(StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"])

    # -- apply --------------------------------------------------------------

    def zone_key(self, owner: dns.name.Name) -> str:
        return self.zone_for(owner)[0]

    def ttl_range(self, owner: dns.name.Name) -> tuple[int, int]:
        return 0, MAX_TTL

    def parsed(self, owner: dns.name.Name, raw: Any) -> RRset:
        return _rrset(owner, raw)

    def apply_zone(self, zone_id: str, changes: Sequence[OwnerChange]) -> None:
        owners = [c.owner for c in changes]
        raw = self.listing(zone_id, owners)
        pairs: list[list[dict[str, Any]]] = []
        for change in changes:
            current = raw.get(change.owner)
            found = _rrset(change.owner, current)
            new = target(change, found.records, found.ttl)
            if new is None:
                continue
            pair = []
            if current is not None:  # the exact RRset read: the batch fails if it changed since
                pair.append({"Action": "DELETE", "ResourceRecordSet": _exact(current)})
            if new:
                pair.append(
                    {
                        "Action": "CREATE",
                        "ResourceRecordSet": {
                            "Name": change.owner.to_text(),
                            "Type": "TLSA",
                            "TTL": change.ttl,
                            "ResourceRecords": [{"Value": v} for v in presentation(new)],
                        },
                    }
                )
            pairs.append(pair)
        for batch in _batches(pairs):
            try:
                answer = self._call(
                    "the change batch",
                    "change_resource_record_sets",
                    HostedZoneId=zone_id,
                    ChangeBatch={"Comment": "tlsa-manager", "Changes": batch},
                )
            except _BatchRejected as rejected:
                # Nothing of this batch was applied, or a retry of it after a lost answer
                # found it already done: read again to tell which.
                if self.applied(zone_id, changes):
                    return
                raise ProviderConflict(
                    f"Route 53 refused the change: the TLSA records changed since they were read "
                    f"({rejected})",
                    "someone else edited them; nothing was applied; run again to re-read and re-plan",
                ) from None
            self.writes += 1
            self._wait_insync(answer["ChangeInfo"])

    def _wait_insync(self, info: Mapping[str, Any]) -> None:
        """Poll GetChange until Route 53 reports the change on all its servers."""
        deadline = time.monotonic() + self.change_timeout
        while info.get("Status") != "INSYNC":
            if time.monotonic() >= deadline:
                raise ProviderError(
                    f"Route 53 change {info.get('Id')} is still {info.get('Status')} after "
                    f"{self.change_timeout:g}s",
                    "it was accepted and will apply; run again later to continue",
                )
            time.sleep(self.poll)
            info = self._call("waiting for the change", "get_change", Id=info["Id"])["ChangeInfo"]

    def _count(self, **_: Any) -> None:
        self.requests += 1

    def close(self) -> None:
        close_once(self._client)
        self._client = None


class _BatchRejected(Exception):
    pass


def _zone_id(value: str) -> str:
    return value.rsplit("/", 1)[-1]


def _unescape(name: str) -> str:
    """Route 53 returns some characters of names as octal escapes (``\\052`` for ``*``)."""
    return dns.name.from_text(name).to_text() if "\\" in name else name


def _exact(rrset: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "Name": rrset["Name"],
        "Type": "TLSA",
        "TTL": rrset["TTL"],
        "ResourceRecords": [{"Value": r["Value"]} for r in rrset.get("ResourceRecords", [])],
    }


def _rrset(owner: dns.name.Name, raw: Mapping[str, Any] | None) -> RRset:
    if not raw or not raw.get("ResourceRecords"):
        return RRset(owner)
    records = parse_values("Route 53", owner, (r["Value"] for r in raw["ResourceRecords"]))
    return RRset(owner, records, int(raw["TTL"]))


def _batches(pairs: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Change lists within Route 53's 1,000 records a batch, never splitting an owner's pair."""
    out: list[list[dict[str, Any]]] = []
    size = 0
    for pair in pairs:
        count = sum(len(c["ResourceRecordSet"]["ResourceRecords"]) for c in pair)
        if not out or size + count > BATCH_RECORDS:
            out.append([])
            size = 0
        out[-1].extend(pair)
        size += count
    return out
