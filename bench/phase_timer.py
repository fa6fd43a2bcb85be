"""Where a command's time goes, phase by phase: the CLI run in process with a wall and
CPU timer around each phase (config, chains, provider reads, observation, planning,
ledger saves, building and sending the UPDATEs, the wait).

Usage: python bench/phase_timer.py --config C sync   (any tlsa-manager arguments)
Prints one line per phase on stderr when the command ends (docs/performance.md).
"""

from __future__ import annotations

import atexit
import sys
import time
from collections.abc import Callable
from typing import Any

START_WALL, START_CPU = time.perf_counter(), time.process_time()
STATS: dict[str, list[float]] = {}


def timed(owner: Any, attribute: str, label: str) -> None:
    """Replace ``owner.attribute`` by the same function with a timer around it."""
    original: Callable[..., Any] = getattr(owner, attribute)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            entry = STATS.setdefault(label, [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - wall
            entry[2] += time.process_time() - cpu

    setattr(owner, attribute, wrapper)


def report() -> None:
    wall, cpu = time.perf_counter() - START_WALL, time.process_time() - START_CPU
    print(f"whole command: wall {wall:.3f} s, CPU {cpu:.3f} s", file=sys.stderr)
    for label, (calls, wall, cpu) in STATS.items():
        print(f"  {label:44s} {int(calls):5d} calls  wall {wall:6.3f} s  CPU {cpu:6.3f} s", file=sys.stderr)


def main() -> None:
    import tlsa_manager.cli.main  # noqa: F401  (the module; the package exports its main())
    from tlsa_manager import config, engine, hostfiles, ledger, runner
    from tlsa_manager import fleet as fleet_module
    from tlsa_manager_providers import rfc2136

    cli = sys.modules["tlsa_manager.cli.main"]
    timed(config, "load_config", "configuration")
    timed(runner, "open_hosts", "opening the hosts (providers, servers)")
    timed(hostfiles.HostFiles, "chains", "chains (certificate files)")
    timed(fleet_module.FleetZones, "read", "provider reads")
    timed(fleet_module.FleetZones, "observe", "observations")
    timed(engine, "plan_host", "planning (per host)")
    timed(engine, "plan_members", "read + observe + plan (per pass)")
    timed(runner, "plan_members", "read + observe + plan (plan command)")
    timed(ledger.Ledger, "save", "ledger saves")
    timed(rfc2136.Rfc2136Provider, "build_update", "building the UPDATEs")
    timed(rfc2136.Rfc2136Provider, "_send", "sending the UPDATEs (server's time)")
    timed(fleet_module.FleetZones, "apply", "apply")
    timed(fleet_module, "wait_until_served", "the wait (polls, full observation)")
    atexit.register(report)
    sys.argv = ["tlsa-manager", *sys.argv[1:]]
    cli.run()


if __name__ == "__main__":
    main()
