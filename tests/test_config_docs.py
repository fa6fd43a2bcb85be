"""docs/config.md lists every key the code reads, and no key the code does not (issue 13.8)."""

from __future__ import annotations

import re
from pathlib import Path

from tlsa_manager.config import HOST_KEYS
from tlsa_manager.registry import available

from conftest import REPO

DOC = (REPO / "docs" / "config.md").read_text()


def table_keys(section: str) -> set[str]:
    """Backticked names in the first column of the table under a heading."""
    body = DOC.split(section + "\n", 1)[1]
    body = re.split(r"\n#{2,3} ", body, maxsplit=1)[0]
    keys: set[str] = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            keys |= set(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return keys


def test_host_keys_match_the_code() -> None:
    assert table_keys("## Host keys") == set(HOST_KEYS)


def test_top_level_keys_match_the_code() -> None:
    from tlsa_manager import config

    source = Path(config.__file__).read_text()
    accepted = set(re.findall(r'"([a-z_]+)"', source.split("unknown = set(doc) - {", 1)[1].split("}", 1)[0]))
    assert accepted == {"state_dir", "instance", "providers", "hosts", "defaults"}
    top = DOC.split("## Top level\n", 1)[1].split("\n## ", 1)[0]
    assert {"state_dir", "instance", "[defaults]", "[providers.NAME]", '[hosts."NAME"]'} == set(
        re.findall(r"^\| `([^`]+)`", top, re.MULTILINE)
    )


def test_every_built_in_provider_key_is_documented_and_declared() -> None:
    """Each provider's declared settings are in config.md, and every key its source reads
    from its configuration is declared (so none is read without being documented)."""
    built_in = {n: ep for n, ep in available().items() if ep.value.startswith("tlsa_manager_providers.")}
    assert {"rfc2136", "zonefile", "cloudflare"} <= set(built_in)
    for name, ep in built_in.items():
        cls = ep.load()
        assert table_keys(f'### `type = "{name}"`') == set(cls.settings), name
        module_file = __import__(cls.__module__, fromlist=["x"]).__file__
        assert module_file is not None, cls.__module__
        source = Path(module_file).read_text()
        read = set(re.findall(r'config(?:\.get\(|\[)"([a-z_]+)"', source))
        assert read <= set(cls.settings), f"{name} reads undeclared {read - set(cls.settings)}"


def table_meanings(section: str) -> dict[str, str]:
    """The meaning column of a key table under a heading, backticks removed, by key."""
    body = DOC.split(section + "\n", 1)[1]
    body = re.split(r"\n#{2,3} ", body, maxsplit=1)[0]
    rows = (line.split("|") for line in body.splitlines() if line.startswith("| `"))
    return {cells[1].strip().strip("`"): cells[2].strip().replace("`", "") for cells in rows}


def test_every_built_in_provider_key_is_described_as_its_settings_say() -> None:
    """The tables say what each provider's ``settings`` say (the shared descriptions in
    provider_settings / secrets included), word for word; the page may add to it."""
    built_in = {n: ep for n, ep in available().items() if ep.value.startswith("tlsa_manager_providers.")}
    for name, ep in built_in.items():
        documented = table_meanings(f'### `type = "{name}"`')
        for key, meaning in ep.load().settings.items():
            assert documented[key].startswith(meaning), (name, key, documented[key], meaning)


def test_nameservers_precedence_is_stated() -> None:
    assert "this host key wins" in DOC and "The host's\nlist wins" in DOC
