"""H15 of an owner name alone: not the port-25 owner SMTP senders look up, or a zone
suffix written twice (a missing trailing dot) (pure).

The same for every plan of that name, so worked out once per name and kept: the
planner asks it for every owner of every host, twice per host in a first sync.
"""

from __future__ import annotations

import functools

import dns.name

from tlsa_manager.hazards import WRONG_OWNER, Hazard, Severity


def owner_name_hazards(name: dns.name.Name) -> tuple[Hazard, ...]:
    """The findings of ``name`` (kept by its labels as written: the messages show the
    name as it was given)."""
    return _name_hazards(name.labels)


@functools.lru_cache(maxsize=65536)
def _name_hazards(labels: tuple[bytes, ...]) -> tuple[Hazard, ...]:
    out = []
    if labels and labels[0] != b"_25":
        text = dns.name.Name(labels).to_text()  # what name_text() and f"{name}" give
        out.append(
            WRONG_OWNER.hazard(
                f"{text} is not the port-25 owner that SMTP senders look up",
                "publish at _25._tcp.<mx-host> for MTA-to-MTA mail",
                text,
            )
        )
    host_labels = [lab.decode().lower() for lab in labels[2:-1]]
    for size in range(2, len(host_labels) // 2 + 1):
        if host_labels[-size:] == host_labels[-2 * size : -size]:
            text = dns.name.Name(labels).to_text()
            out.append(
                WRONG_OWNER.hazard(
                    f"{text} repeats its zone suffix (a missing trailing dot?)",
                    "write the host name fully qualified",
                    text,
                    Severity.FATAL,
                )
            )
            break
    return tuple(out)
