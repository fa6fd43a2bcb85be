"""What happens in a simulated world: the events of a scenario or timeline, and the replay.

:func:`dispatch` applies one event (the kinds are listed in docs/simulate.md);
:func:`replay` runs timed events with a ``sync`` timer through the engine, checking
the invariant at every delivery and event, and can stop once the world is settled.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tlsa_manager.errors import ConfigError
from tlsa_manager.ledger import LedgerData

if TYPE_CHECKING:
    from tlsa_manager.simulation.world import World

EVENTS = (
    "sync",
    "renew",
    "next-key",
    "ttl",
    "lag",
    "stop",
    "resume",
    "down",
    "up",
    "fail-next-apply",
    "crash",
    "edit",
    "parallel",
    "mta-stuck",
    "external-ttl",
    "lose-ledger",
    "clock-step",
    "lose-reply",
    "partial-write",
    "stage-race",
    "mta-fixed",
    "interleave",
    "reboot",
)


def dispatch(world: World, event: dict[str, Any]) -> None:
    """Apply one event to ``world`` (or, with ``instance``, to another instance)."""
    if "instance" in event:
        target = world.dns.worlds[int(event["instance"]) % len(world.dns.worlds)]
        target.run_event({k: v for k, v in event.items() if k != "instance"})
        return
    kind = event["do"]
    if kind == "interleave":
        world.interleave = (str(event.get("step", "observed")), int(event.get("other", 1)))
    elif kind == "sync":
        world.sync()
    elif kind == "renew":
        world.renew(
            event.get("key_type", "ecdsa"),
            new_key=bool(event.get("new_key", False)),
            direct=bool(event.get("direct", False)),
            issuer=event.get("issuer") or world.live[event.get("key_type", "ecdsa")].issuer_name or "",
        )
    elif kind == "next-key":
        world.add_next_key(event.get("key_type", "ecdsa"))
        world.log(f"next {event.get('key_type', 'ecdsa')} key generated")
    elif kind == "ttl":
        world.set_ttl(int(event["ttl"]))
    elif kind == "lag":
        world.set_lag(event.get("server", "ns2"), float(event["seconds"]))
    elif kind == "stop":
        world.stop(event.get("server", "ns2"))
    elif kind == "resume":
        world.resume(event.get("server", "ns2"))
    elif kind == "down":
        world.dns.servers[event.get("server", "ns2")].down = True
        world.log(f"{event.get('server', 'ns2')} stops answering")
    elif kind == "up":
        world.dns.servers[event.get("server", "ns2")].down = False
        world.log(f"{event.get('server', 'ns2')} answers again")
    elif kind == "fail-next-apply":
        world.fail_next_apply = True
    elif kind == "crash":
        world.crash_at = str(event.get("step", "intent-saved"))
    elif kind == "edit":
        world.edit_before_apply = True
    elif kind == "parallel":
        world.parallel_next = True
    elif kind == "external-ttl":
        world.external_ttl(int(event["ttl"]))
    elif kind == "lose-ledger":
        if event.get("step"):
            world.lose_ledger_at = str(event["step"])
        else:
            world.saved = LedgerData()
            world.log("the ledger is deleted")
    elif kind == "clock-step":
        world.skew += float(event["seconds"])
        world.log(f"the host clock steps by {event['seconds']:+.0f} s (now off by {world.skew:+.0f} s)")
    elif kind == "reboot":
        world.boot_id = f"boot-{int(world.boot_id.rsplit('-', 1)[-1]) + 1}"
        world.booted = world.clock
        world.log("the host reboots (the boot-time clock starts again)")
    elif kind == "lose-reply":
        world.lose_reply_next = True
    elif kind == "partial-write":
        world.partial_next = True
    elif kind == "stage-race":
        world.race = (str(event.get("step", "gated")), event)
    elif kind == "mta-fixed":
        if world.mta_other:
            world.mta_other = {}
            world.log("the MTA is pointed at the configured files (not reloaded yet)")
    elif kind == "mta-stuck":
        world.mta_stuck = bool(event.get("stuck", True))
        world.log("the MTA " + ("ignores reloads from now on" if world.mta_stuck else "reloads again"))
    else:
        raise ConfigError(f"unknown scenario event {kind!r}", f"use one of: {', '.join(EVENTS)}")


def replay(
    world: World,
    timed: Sequence[tuple[float, dict[str, Any]]],
    until: float,
    timer: float | None = 3600.0,
    *,
    stop_when_settled: bool = False,
) -> None:
    """Replay ``(offset_seconds, event)`` pairs; a timer runs ``sync`` every ``timer`` s.

    With ``stop_when_settled`` the replay ends early once no event is left and the
    world is quiescent (``World.quiescent``): every later timer run would find nothing
    to do, and with nothing served anew no cached version can start to violate the
    invariant.
    """
    queue = sorted(timed, key=lambda e: e[0])
    # Timer ticks at t0 + k x timer, from the first one after now (a replay resumes).
    ticks = itertools.count(max(1, int((world.clock - world.t0) // timer) + 1) if timer else 1)
    next_tick = world.t0 + next(ticks) * timer if timer else None
    i = 0
    while True:
        next_event = world.t0 + queue[i][0] if i < len(queue) else None
        candidates = [t for t in (next_event, next_tick) if t is not None and t <= world.t0 + until]
        if not candidates:
            break
        t = min(candidates)
        if next_event is None and stop_when_settled and world.quiescent():
            break
        world.advance(t)
        if next_event is not None and t == next_event:
            world.run_event(queue[i][1])
            i += 1
        else:
            for each in list(world.dns.worlds):
                each.sync("timer" if each is world else f"timer {each.name}")
            next_tick = world.t0 + next(ticks) * timer if timer else None
    world.advance(world.t0 + until)
