"""Built-in DNS providers of tlsa-manager.

Each provider lives in its own module and registers under the entry-point group
``tlsa_manager.providers`` in pyproject.toml, exactly as a third-party provider
would; the core finds them through that group and never imports this package by name.
"""
