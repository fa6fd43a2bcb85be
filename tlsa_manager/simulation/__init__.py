"""A simulated DNS, clock, resolver caches and MTA, driven through the real engine.

Used by ``tlsa-manager simulate SCENARIO`` and by the property tests
(tests/test_simulation.py).  Nothing is mocked inside the product:
:func:`tlsa_manager.engine.converge` runs unchanged, with a :class:`World` as its ports.

- ``dns.py``: the authoritative servers that lag, resolver caches, the invariant checks;
- ``instance.py``: one machine behind the MX name (MTA, files, ledger, clock);
- ``ports.py``: the engine's ports over an instance, and the faults events arm there;
- ``world.py``: an instance's runs (sync, renewals, configuration changes);
- ``events.py``: the events of a scenario or timeline, and the replay with a timer;
- ``scenario.py``: scenario files (docs/simulate.md).
"""

from tlsa_manager.simulation.dns import HOST, OWNER, Dns, Interval, Server, Version, Violation
from tlsa_manager.simulation.events import EVENTS
from tlsa_manager.simulation.ports import SimCrash
from tlsa_manager.simulation.scenario import Scenario, load_scenario
from tlsa_manager.simulation.world import World

__all__ = [
    "EVENTS",
    "HOST",
    "OWNER",
    "Dns",
    "Interval",
    "Scenario",
    "Server",
    "SimCrash",
    "Version",
    "Violation",
    "World",
    "load_scenario",
]
