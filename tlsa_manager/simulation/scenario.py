"""Scenario files for ``tlsa-manager simulate``: a world's settings and timed events (TOML).

The format is docs/simulate.md's; every mistake in a file is one ConfigError line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsa_manager.policy import HostPolicy, IssuerFacts
from tlsa_manager.simulation.world import World


@dataclass
class Scenario:
    """A TOML scenario: the world's settings and a list of timed events."""

    description: str
    world: World
    events: list[tuple[float, dict[str, Any]]]
    until: float
    timer: float | None


def load_scenario(path: str, issuers: Sequence[IssuerFacts]) -> Scenario:
    """Read a scenario file (format: docs/simulate.md); every mistake is one ConfigError line."""
    import tomllib

    from tlsa_manager.durations import parse_duration
    from tlsa_manager.errors import ConfigError, InputError
    from tlsa_manager.fsutil import decode_text, read_regular
    from tlsa_manager.records import parse_params

    file = Path(path)
    if not file.exists():
        raise InputError(f"{path}: no such scenario file", "see examples/scenarios/")
    # A regular file only, size-capped: a FIFO or /dev/zero must not hang the run.
    text = decode_text(read_regular(file, limit=4 * 1024 * 1024, what="scenario file"), file)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})", "fix the syntax") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply", "a scenario is flat tables") from None
    world_doc = doc.get("world", {})
    servers = {
        str(name): parse_duration(lag, f"world.servers.{name}")
        for name, lag in world_doc.get("servers", {"ns1": 0, "ns2": "30s"}).items()
    }
    kinds = tuple(parse_params(k) for k in world_doc.get("records", ["3 1 1", "2 1 1"]))
    policy = HostPolicy(
        kinds=kinds, unsafe_allow_fragile_kinds=bool(world_doc.get("unsafe_allow_fragile_kinds"))
    )
    from tlsa_manager.policy import validate_kinds

    validate_kinds(kinds, policy.unsafe_allow_fragile_kinds)
    known = {i.name for i in issuers}
    initial = {str(k): str(v) for k, v in world_doc.get("issuers", {}).items()}
    for name in initial.values():
        if name not in known:
            raise ConfigError(f"{path}: unknown issuer {name!r}", "use a catalog name such as YE1 or YR2")
    key_types = world_doc.get("key_types", ["ecdsa"])
    if not isinstance(key_types, list) or not key_types or any(k not in ("ecdsa", "rsa") for k in key_types):
        raise ConfigError(f"{path}: world.key_types must list ecdsa and/or rsa", 'e.g. key_types = ["rsa"]')
    world = World(
        issuers,
        servers=servers,
        ttl=int(parse_duration(world_doc.get("ttl", "1h"), "world.ttl")),
        negative_ttl=int(parse_duration(world_doc.get("negative_ttl", "5m"), "world.negative_ttl")),
        slack=parse_duration(world_doc.get("slack", "5m"), "world.slack"),
        policy=policy,
        key_types=tuple(key_types),
        initial_issuers=initial,
        seed=int(world_doc.get("seed", 0)),
    )
    events = []
    for i, ev in enumerate(doc.get("events", [])):
        if "do" not in ev or "at" not in ev:
            raise ConfigError(f"{path}: event {i + 1} needs 'at' and 'do'", 'e.g. at = "1d", do = "renew"')
        if ev.get("issuer") and ev["issuer"] not in known:
            raise ConfigError(f"{path}: event {i + 1}: unknown issuer {ev['issuer']!r}", "use YE1-3 or YR1-3")
        at = parse_duration(ev["at"], f"event {i + 1} at")
        body = {k: v for k, v in ev.items() if k != "at"}
        if "seconds" in body:
            body["seconds"] = parse_duration(body["seconds"], f"event {i + 1} seconds")
        if "ttl" in body:
            body["ttl"] = int(parse_duration(body["ttl"], f"event {i + 1} ttl"))
        events.append((at, body))
    timer_value = world_doc.get("timer", "1h")
    timer = None if timer_value in ("off", 0, "0") else parse_duration(timer_value, "world.timer")
    last = max((at for at, _ in events), default=0.0)
    until = parse_duration(world_doc.get("until", last + 2 * 86400), "world.until")
    return Scenario(str(doc.get("description", "")), world, events, until, timer)
