"""Is the wall clock trustworthy?  Steps detected against a clock nobody can set.

Every wait of the deploy gate is a difference of wall-clock times, some taken in
earlier runs (the ledger).  A clock that was hours behind and is then stepped
forward by NTP makes those differences too large and would open a gate early.  The
kernel's boot-time clock (CLOCK_BOOTTIME) counts seconds since boot, including
suspend, and cannot be set; within one boot the wall clock must advance as it does,
within the slack.  A step is also evident when the ledger holds times in the future,
and a clock that is behind shows in what the DNS carries: an RRSIG's inception is
the signer's clock at signing time, so a signature made "in our future" means our
clock is behind the signer's (and will likely be stepped forward by NTP later, which
across a reboot no other signal sees).  When a step is detected the engine starts a
new, blind history: gates then wait as after a lost ledger (docs/planner.md,
"Assumptions").
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClockSample:
    """The wall clock, the boot-time clock and the boot they belong to, read together."""

    wall: float
    boot: float
    boot_id: str

    def as_json(self) -> dict[str, Any]:
        return {"wall": self.wall, "boot": self.boot, "boot_id": self.boot_id}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> ClockSample | None:
        if not doc:
            return None
        try:
            return cls(float(doc["wall"]), float(doc["boot"]), str(doc["boot_id"]))
        except (KeyError, TypeError, ValueError):
            return None


def sample() -> ClockSample:
    """Read the clocks of this machine (the only I/O in this module)."""
    boot = time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC))
    return ClockSample(time.time(), boot, _boot_id())


@functools.cache
def _boot_id() -> str:
    """Read once per process: a process does not outlive its boot (a fleet run samples
    the clocks twice per host)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return "unknown"


#: the least step that counts: the two clocks are read one after the other, so they
#: drift apart by microseconds; with the tolerance a host's ``slack = "0s"`` every run
#: stopped as "stepped back by 0 s"
MIN_STEP = 1.0


def step(before: ClockSample | None, now: ClockSample, tolerance: float) -> str | None:
    """Why the wall clock cannot be trusted between two samples, or None.

    Across a reboot the boot-time clock restarts, so no comparison is possible; a
    step there is seen only through times in the future (:func:`future`).
    """
    if before is None or before.boot_id != now.boot_id or now.boot_id == "unknown":
        return None
    drift = (now.wall - before.wall) - (now.boot - before.boot)
    if abs(drift) > max(tolerance, MIN_STEP):
        direction = "forward" if drift > 0 else "back"
        return f"the wall clock stepped {direction} by {abs(drift):.0f} s since {_iso(before.wall)}"
    return None


def future(times: Iterable[float], now: float, tolerance: float) -> str | None:
    """A step back: the ledger recorded a time later than now."""
    latest = max(times, default=None)
    if latest is not None and latest > now + tolerance:
        return f"the ledger holds a time {latest - now:.0f} s in the future ({_iso(latest)})"
    return None


def signed_future(inceptions: Iterable[float], now: float, tolerance: float) -> str | None:
    """The clock is behind: the DNS carries a signature made later than ``now``.

    Signers date the inception back (BIND by an hour), so only a clock behind by more
    than that and ``tolerance`` shows here; within it the gates' own slack covers it.
    """
    latest = max(inceptions, default=None)
    if latest is not None and latest > now + tolerance:
        return (
            f"the clock is {latest - now:.0f} s behind the DNS: an RRSIG was made at {_iso(latest)}, "
            "after this host's time"
        )
    return None


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
