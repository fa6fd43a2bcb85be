"""``export``: the records each configured host should carry, for DNS edited by hand.

Computed from the chain files alone (live, staged, next keys) with the same policy as
``sync``; no provider is opened and nothing is written.  No printing: the CLI writes
:meth:`ExportReport.as_dict`, :meth:`ExportReport.zone_lines` or
:meth:`ExportReport.nsupdate_lines` (docs/export.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dns.name

from tlsa_manager.catalog import Catalog
from tlsa_manager.config import Config, HostSpec
from tlsa_manager.policy import DesiredSet


@dataclass(frozen=True)
class OwnerExport:
    """The desired set of one owner name (``_PORT._tcp.HOST.``) of a host."""

    spec: HostSpec
    owner: dns.name.Name
    want: DesiredSet


@dataclass(frozen=True)
class ExportReport:
    owners: tuple[OwnerExport, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": [
                {
                    "owner": o.owner.to_text(),
                    "ttl": o.spec.ttl,
                    "record": d.record.to_text(),
                    "role": d.role,
                    "reason": d.reason,
                    "publish": "now",
                }
                for o in self.owners
                for d in o.want.records
            ]
        }

    def nsupdate_lines(self) -> list[str]:
        """An ``nsupdate`` script: one ``send`` per owner."""
        lines = []
        for o in self.owners:
            lines.append(
                f"; {o.spec.name}: add these now; remove old records only after the new chain is live"
            )
            for d in o.want.records:
                lines.append(f"update add {o.owner.to_text()} {o.spec.ttl} IN TLSA {d.record.to_text()}")
            lines.append("send")
        return lines

    def zone_lines(self) -> list[str]:
        """Zone-file lines with the role of each record and the hazards as comments."""
        lines = []
        for o in self.owners:
            lines.append(f"; {o.spec.name}: publish all of these now (pre-publishing is always safe);")
            lines.append("; remove a record only when no server can present the chain it matches")
            for d in o.want.records:
                lines.append(f"{o.owner.to_text()} {o.spec.ttl} IN TLSA {d.record.to_text()} ; {d.role}")
            lines += [f"; {hazard.one_line()}" for hazard in o.want.hazards]
        return lines


def export_records(config: Config, names: Sequence[str], all_hosts: bool, catalog: Catalog) -> ExportReport:
    """The desired records of every selected host, at each of its ports."""
    from tlsa_manager.hostports import LivePorts
    from tlsa_manager.policy import desired, issuers_from_catalog
    from tlsa_manager.records import owner_name

    owners = []
    for spec in config.select(list(names), all_hosts):
        ports = LivePorts(spec, None, catalog)  # type: ignore[arg-type]
        chains = ports.chains()
        want = desired(
            chains.live,
            chains.staged,
            chains.next_keys,
            issuers_from_catalog(catalog),
            spec.policy,
            owner=spec.name,
        )
        owners += [OwnerExport(spec, owner_name(spec.name, port), want) for port in spec.ports]
    return ExportReport(tuple(owners))
