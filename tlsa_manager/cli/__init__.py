"""The ``tlsa-manager`` command: one module per command group, the only code that prints.

``main`` (argument parsing, the error -> exit code contract) lives in
:mod:`tlsa_manager.cli.main`; each command group (``records``, ``catalog``, ``hosts`` for
plan/sync/status/export, ``hook``, ``key``, ``check``, ``monitoring`` for
metrics/exporter, ``units``, ``simulate``) is a module with ``add_parser()`` and
``run()``, imported only when its command runs, so ``--help`` stays fast.
"""

from tlsa_manager.cli.main import main, run

__all__ = ["main", "run"]
