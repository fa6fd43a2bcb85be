"""``python -m tlsa_manager`` runs the command-line interface."""

from tlsa_manager.cli import run

run()
