"""Scenario files for ``tlsa-manager simulate``: a world's settings and timed events (TOML).

The format is docs/simulate.md's; every mistake in a file is one ConfigError line,
found before anything runs: an unknown key (a typo such as ``unitl`` would otherwise
run the default silently), an empty file or ``servers = {}`` (both used to run the
defaults), and more steps than :data:`MAX_STEPS` (a timer every second for ten years
ran for hours).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlsa_manager.errors import ConfigError
from tlsa_manager.policy import HostPolicy, IssuerFacts
from tlsa_manager.ports import CHECKPOINTS
from tlsa_manager.simulation.world import World

#: the most steps (timer runs plus events) a scenario file may ask for: about half a
#: minute of CPU; a timer every hour covers 5 years, every 15 minutes 520 days
MAX_STEPS = 50_000

TOP_KEYS = ("description", "world", "events")
WORLD_KEYS = (
    "servers", "ttl", "negative_ttl", "slack", "key_types", "issuers", "records",
    "unsafe_allow_fragile_kinds", "timer", "until", "seed",
)  # fmt: skip
#: each event kind and the fields it takes besides ``at``, ``do`` (docs/simulate.md)
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "sync": (),
    "renew": ("key_type", "new_key", "issuer", "direct"),
    "next-key": ("key_type",),
    "ttl": ("ttl",),
    "lag": ("server", "seconds"),
    "stop": ("server",),
    "resume": ("server",),
    "down": ("server",),
    "up": ("server",),
    "fail-next-apply": (),
    "crash": ("step",),
    "mta-stuck": ("stuck",),
    "mta-fixed": (),
    "external-ttl": ("ttl",),
    "lose-ledger": ("step",),
    "clock-step": ("seconds",),
    "reboot": (),
    "lose-reply": (),
    "partial-write": (),
    "stage-race": ("step", "key_type", "new_key", "issuer"),
    "interleave": ("step", "other"),
    "edit": (),
    "parallel": (),
}
#: where ``crash``, ``lose-ledger``, ``stage-race`` and ``interleave`` act (a misspelt
#: step never fires: the event would do nothing)
STEPS = CHECKPOINTS
#: the most events: an event costs up to 30 timer runs (a renewal stages a chain and
#: syncs; 49,000 of them ran for minutes), so 3,000 take about half a minute too
MAX_EVENTS = 3_000
#: every server is asked at every step: thousands of them made a run of minutes
MAX_SERVERS = 64
EXAMPLES = {"server": "ns2", "key_type": "rsa", "step": "applied", "issuer": "YE2"}


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
    from tlsa_manager.errors import InputError
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
    world_doc, event_docs = _checked(doc, path)
    server_doc = world_doc.get("servers", {"ns1": 0, "ns2": "30s"})
    if not isinstance(server_doc, dict) or not server_doc:
        raise ConfigError(
            f"{path}: world.servers must name at least one authoritative server",
            'e.g. servers = { ns1 = "0s", ns2 = "10m" }, or leave it out for ns1 + ns2 (30 s lag)',
        )
    if len(server_doc) > MAX_SERVERS:
        raise ConfigError(
            f"{path}: world.servers names {len(server_doc):,} servers, more than {MAX_SERVERS}",
            "a zone has a few authoritative servers; name fewer",
        )
    servers = {str(name): parse_duration(lag, f"world.servers.{name}") for name, lag in server_doc.items()}
    _check_world_types(world_doc, path)
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
    for i, ev in enumerate(event_docs):
        if "do" not in ev or "at" not in ev:
            raise ConfigError(f"{path}: event {i + 1} needs 'at' and 'do'", 'e.g. at = "1d", do = "renew"')
        _check_event_values(ev, f"{path}: event {i + 1} ({ev['do']})", servers, key_types)
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
    check_steps(path, events, until, timer)
    return Scenario(str(doc.get("description", "")), world, events, until, timer)


def _checked(doc: dict[str, Any], path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``[world]`` table and the ``[[events]]``, every key known: a misspelt key
    would otherwise be ignored and the default run in its place."""
    if "world" not in doc and "events" not in doc:
        raise ConfigError(
            f"{path}: the scenario is empty (no [world] and no [[events]])",
            "see examples/scenarios/ and docs/simulate.md",
        )
    _known_keys(doc, TOP_KEYS, path, "top-level key")
    world_doc = doc.get("world", {})
    if not isinstance(world_doc, dict):
        raise ConfigError(f"{path}: world must be a table", "write [world] and its keys under it")
    _known_keys(world_doc, WORLD_KEYS, path, "key in [world]")
    event_docs = doc.get("events", [])
    if not isinstance(event_docs, list) or not all(isinstance(ev, dict) for ev in event_docs):
        raise ConfigError(
            f"{path}: events must be [[events]] tables", 'e.g. [[events]] at = "1d" do = "renew"'
        )
    for i, ev in enumerate(event_docs):
        kind = ev.get("do")
        if "do" in ev and kind not in EVENT_FIELDS:
            raise ConfigError(
                f"{path}: event {i + 1}: unknown scenario event {kind!r}",
                f"use one of: {', '.join(EVENT_FIELDS)}",
            )
        if isinstance(kind, str):
            _known_keys(ev, ("at", "do", *EVENT_FIELDS[kind]), path, f"field of event {i + 1} ({kind})")
    return world_doc, event_docs


def _check_world_types(world_doc: dict[str, Any], path: str) -> None:
    """Wrongly typed ``[world]`` values are one line, not a TypeError at run time."""
    expected = (
        ("records", list, "a list", '["3 1 1", "2 1 1"]'),
        ("issuers", dict, "a table", '{ ecdsa = "YE1" }'),
        ("unsafe_allow_fragile_kinds", bool, "true or false", "true"),
        ("seed", int, "an integer", "0"),
    )
    for key, kind, name, example in expected:
        if key in world_doc and (
            not isinstance(world_doc[key], kind) or isinstance(world_doc[key], bool) != (kind is bool)
        ):
            raise ConfigError(
                f"{path}: world.{key} = {world_doc[key]!r} is not {name}",
                f"e.g. {key} = {example}",
            )
    if any(k not in ("ecdsa", "rsa") for k in world_doc.get("issuers", {})):
        raise ConfigError(
            f"{path}: world.issuers names a key type other than ecdsa, rsa",
            'e.g. issuers = { ecdsa = "YE1" }',
        )


def _check_event_values(
    ev: dict[str, Any], where: str, servers: dict[str, float], key_types: Sequence[str]
) -> None:
    """The values of an event's fields: a server the world has, a key type, a checkpoint
    name, a boolean; each used to fail at run time (KeyError) or to do nothing silently."""
    for key in ("server", "key_type", "step", "issuer"):
        if key in ev and not isinstance(ev[key], str):
            raise ConfigError(
                f"{where}: {key} = {ev[key]!r} is not a string", f'e.g. {key} = "{EXAMPLES[key]}"'
            )
    server = ev.get("server", "ns2" if "server" in EVENT_FIELDS[ev["do"]] else None)
    if server is not None and server not in servers:
        raise ConfigError(
            f"{where}: unknown server {server!r}", f"set server to one of world.servers: {', '.join(servers)}"
        )
    if "key_type" in ev and ev["key_type"] not in ("ecdsa", "rsa"):
        raise ConfigError(
            f"{where}: key_type {ev['key_type']!r} is not ecdsa or rsa", 'e.g. key_type = "rsa"'
        )
    if ev["do"] == "renew" and not ev.get("issuer") and ev.get("key_type", "ecdsa") not in key_types:
        raise ConfigError(
            f"{where}: no live {ev.get('key_type', 'ecdsa')} chain to renew",
            "add it to world.key_types, or give the issuer of its first certificate",
        )
    if "step" in ev and ev["step"] not in STEPS:
        raise ConfigError(
            f"{where}: step {ev['step']!r} is not a checkpoint", f"use one of: {', '.join(STEPS)}"
        )
    for key in ("new_key", "direct", "stuck"):
        if key in ev and not isinstance(ev[key], bool):
            raise ConfigError(f"{where}: {key} = {ev[key]!r} is not true or false", f"e.g. {key} = true")
    if "other" in ev and (
        not isinstance(ev["other"], int) or isinstance(ev["other"], bool) or ev["other"] < 0
    ):
        raise ConfigError(f"{where}: other = {ev['other']!r} is not an instance number", "e.g. other = 1")


def _known_keys(table: dict[str, Any], known: Sequence[str], path: str, what: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown {what} {unknown[0]!r}", f"use {', '.join(known) or 'none'}")


def check_steps(path: str, events: Sequence[tuple[float, Any]], until: float, timer: float | None) -> None:
    """Refuse, before running, a scenario of more than :data:`MAX_STEPS` steps."""
    if len(events) > MAX_EVENTS:
        raise ConfigError(
            f"{path}: {len(events):,} events, more than the limit of {MAX_EVENTS:,}",
            "split the timeline into several scenarios",
        )
    runs = int(until // timer) if timer else 0
    steps = runs + sum(1 for at, _ in events if at <= until)
    if steps > MAX_STEPS:
        extra = steps - runs
        raise ConfigError(
            f"{path}: {steps:,} steps (a timer run every {timer or 0:,.0f} s for {until:,.0f} s: {runs:,}, "
            f"plus {extra:,} event{'s' if extra != 1 else ''}), more than the limit of {MAX_STEPS:,}",
            "make world.timer longer or world.until shorter",
        )
