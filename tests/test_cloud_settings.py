"""Settings of the cloud providers (route53, desec, hetzner): each documented config is
accepted as written, and an inline secret needs a config file of mode 0600."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlsa_manager.registry import provider_class

from cloud_rollover import documented_settings, inline_secret_needs_0600
from conftest import CliRunner

CASES = {  # provider: (the secret-file key of its docs page, an inline config with a secret)
    "route53": ("secret_access_key_file", 'access_key_id = "AKIDTEST"\nsecret_access_key = "{secret}"'),
    "desec": ("api_token_file", 'api_token = "{secret}"'),
    "hetzner": ("api_token_file", 'api_token = "{secret}"'),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_documented_config_is_accepted(name: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-test-secret\n")
    settings = documented_settings(f"provider-{name}.md", {CASES[name][0]: secret})
    provider = provider_class(settings.pop("type"))(settings)
    assert provider.name == name and "a-test-secret" not in repr(provider)


@pytest.mark.parametrize("name", sorted(CASES))
def test_inline_secret_only_in_a_0600_config(name: str, cli: CliRunner, tmp_path: Path) -> None:
    secret = f"inline-{name}-secret-0123456789"
    inline_secret_needs_0600(cli, tmp_path, f'type = "{name}"\n' + CASES[name][1].format(secret=secret), secret)
