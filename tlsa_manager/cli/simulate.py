"""``simulate SCENARIO``: replay a renewal timeline through the planner (docs/simulate.md)."""

from __future__ import annotations

import argparse
import sys

from tlsa_manager.cli.common import Subparsers, emit_json, state_dir
from tlsa_manager.errors import ExitCode


def add_parser(sub: Subparsers, name: str, help: str) -> None:
    p = sub.add_parser(name, help=help)
    p.add_argument("scenario", help="scenario file (TOML), e.g. examples/scenarios/new-key.toml")


def run(args: argparse.Namespace) -> int:
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.policy import issuers_from_catalog
    from tlsa_manager.simulation import load_scenario

    issuers = issuers_from_catalog(load_catalog(state_dir(args)))
    scenario = load_scenario(args.scenario, issuers)
    world = scenario.world
    world.narrate = not args.json
    world.quiet_timer = not args.verbose
    world.run(scenario.events, scenario.until, scenario.timer)
    violations = [v.describe(world.t0) for v in world.violations]
    if args.json:
        emit_json(
            {
                "scenario": args.scenario,
                "description": scenario.description,
                "timeline": world.timeline,
                "violations": violations,
                "final": world.sender_verdict(),
            }
        )
    else:
        if scenario.description:
            sys.stdout.write(f"# {scenario.description}\n")
        for line in world.timeline:
            sys.stdout.write(line + "\n")
        if violations:
            sys.stdout.write(f"{len(violations)} moment(s) when a DANE sender would defer mail:\n")
            for line in violations[:20]:
                sys.stdout.write(f"  {line}\n")
        else:
            sys.stdout.write("no moment when a DANE sender would defer mail\n")
    return ExitCode.HAZARD if violations else ExitCode.OK
