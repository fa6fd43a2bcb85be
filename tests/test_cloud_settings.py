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


@pytest.mark.parametrize("name", ["cloudflare", "desec", "hetzner"])
def test_token_is_never_sent_over_plain_http_to_another_machine(
    name: str, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: `api_url = "http://..."` (a typo for https, an old proxy note) sent the API
    token in clear to that host; a URL without a scheme failed as "cannot reach". Now both
    are refused before any request (exit 2); http to this machine (a test server) stays."""
    from conftest import EXAMPLES

    secret = f"token-{name}-0123456789abcdef"
    monkeypatch.setenv("CLOUD_TEST_TOKEN", secret)
    for url in ("http://192.0.2.1/api", "api.example.net/v1", "https://[2001:db8::1/v1"):  # last: was exit 1
        config = tmp_path / "config.toml"
        config.write_text(
            f'[providers.p]\ntype = "{name}"\napi_token_env = "CLOUD_TEST_TOKEN"\napi_url = "{url}"\ntimeout = 1\n'
            f'[hosts."mail.example.test"]\ncert = "{EXAMPLES / "mail.example.com" / "fullchain.pem"}"\n'
        )
        result = cli("--config", config, "plan")
        assert result.code == 2 and ("api_url must be an https:// URL" in result.err
                                     or f"{name} api_url is not a URL" in result.err), result.err
        assert secret not in result.out + result.err


@pytest.mark.parametrize(("name", "setting"), [
    ("desec", 'timeout = "abc"'), ("desec", "timeout = 0"), ("desec", 'max_retry_after = "x"'),
    ("hetzner", 'timeout = "abc"'), ("hetzner", "timeout = -5"), ("hetzner", 'poll_interval = "abc"'),
    ("hetzner", 'min_ttl = "abc"'), ("hetzner", "min_ttl = -1"),
    ("route53", 'max_attempts = "abc"'), ("route53", "max_attempts = 0"), ("route53", 'change_poll_seconds = "x"'),
    ("route53", "change_timeout = -1"),
])
def test_a_bad_number_is_one_line_naming_the_setting(
    name: str, setting: str, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/config.md: every mistake is one line with exit code 2, naming the key. Before,
    these were "internal error: ValueError: could not convert string to float" (exit 1),
    or, for a timeout of 0 or below, "Hetzner sent a malformed answer" after a request."""
    from conftest import EXAMPLES

    monkeypatch.setenv("CLOUD_TEST_TOKEN", "token-0123456789abcdef")
    secret = ('access_key_id = "AKIDTEST"\nsecret_access_key_env = "CLOUD_TEST_TOKEN"' if name == "route53"
              else 'api_token_env = "CLOUD_TEST_TOKEN"')
    config = tmp_path / "config.toml"
    config.write_text(
        f'[providers.p]\ntype = "{name}"\n{secret}\n{setting}\n'
        f'[hosts."mail.example.test"]\ncert = "{EXAMPLES / "mail.example.com" / "fullchain.pem"}"\n'
    )
    result = cli("--config", config, "plan")
    key = setting.split(" = ")[0]
    assert result.code == 2 and f"{name} {key}" in result.err and result.err.count("\n") == 1, result.err
