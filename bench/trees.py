"""Run a benchmark's measuring half in a child process on another source tree.

The A/B benchmarks (bench_planning.py, bench_state.py) time main and a branch in the
same run: each tree in children of its own (its package first on ``PYTHONPATH``, no
bytecode prefix shared between the trees), which print their figures as one JSON
document on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_json(tree: Path, argv: list[str]) -> dict[str, Any]:
    """``python ARGV...`` with ``tree``'s package imported; its stdout parsed as JSON."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "providers")])}
    env.pop("PYTHONPYCACHEPREFIX", None)
    command = [sys.executable, *argv]
    done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
