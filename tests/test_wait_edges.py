"""The propagation wait after a write, at its edges, against real servers: what the
primary is read for while the provider writes (earlyviews.py), and the servers a
provider only needs for discovery."""

from __future__ import annotations

from pathlib import Path

from cloud_rollover import one_host
from conftest import CliRunner, bind_read
from servers import PowerDns


def test_a_discovery_server_that_does_not_resolve_is_not_needed_with_nameservers(
    cli: CliRunner, powerdns: PowerDns, tmp_path: Path
) -> None:
    """With ``nameservers`` configured the provider's discovery server is never needed:
    a ``dns_server`` name that does not resolve here (a name only the DNS of another
    network knows) must not fail the write."""
    config, host, owner, _live, _staged = one_host(tmp_path, f"""
type = "powerdns"
api_url = "{powerdns.api_url}"
api_key_file = "{powerdns.key_file}"
dns_server = "pdns-dns.invalid"
""", nameservers=[powerdns.endpoint])
    result = cli("--config", config, "sync", host)
    assert result.code == 0, result.err
    assert len(bind_read(powerdns.port, owner)[0]) == 4
