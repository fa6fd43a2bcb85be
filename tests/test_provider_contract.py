"""Every built-in provider runs the shipped contract (tlsa_manager.testing), each on its own backend.

- rfc2136: a real BIND primary + secondary (DNSSEC, TSIG, NOTIFY/IXFR) on loopback;
- zonefile: a zone file in a temp dir (and, in test_zonefile.py, loaded by a real BIND);
- cloudflare: the real SDK against the local fake API (test_cloudflare.py adds its own faults);
- powerdns: a real pdns_server with its HTTP API, read back by DNS from its own port
  (test_powerdns.py adds two writers, injected races and errors);
- route53 (moto's server made strict), desec and hetzner (local fakes of their APIs): in
  test_route53.py, test_desec.py, test_hetzner.py, with their own faults.
A new provider adds one ``class TestNAME(ProviderContract)`` with its ``backend`` fixture.
Every write is checked by reading back through an independent path.
"""

from __future__ import annotations

from pathlib import Path

import dns.name
import pytest

from tlsa_manager.records import Tlsa
from tlsa_manager.testing import Backend, ProviderContract

from servers import ZONE, Bind, PowerDns


@pytest.fixture
def rfc2136_backend(bind: Bind) -> Backend:
    from tlsa_manager_providers.rfc2136 import Rfc2136Provider

    from conftest import bind_read, nsupdate_add

    provider = Rfc2136Provider({"server": bind.primary.endpoint, "tsig_key_file": str(bind.key_file),
                                "nameservers": bind.nameservers})
    return Backend(provider, lambda o: bind_read(bind.primary.port, o), lambda o, r: nsupdate_add(bind, o, r),
                   zone=ZONE)


@pytest.fixture
def zonefile_backend(tmp_path: Path) -> Backend:
    from tlsa_manager_providers.zonefile import ZoneFileProvider

    from conftest import zonefile_read

    path = tmp_path / f"db.{ZONE}"
    path.write_text(f"$ORIGIN {ZONE}.\n$TTL 300\n@ IN SOA ns1 hostmaster ( 2026112501 60 30 3600 30 )\n"
                    "  IN NS ns1\nns1 IN A 127.0.0.1\n")
    provider = ZoneFileProvider({"zone_file": str(path)})

    def external_add(owner: dns.name.Name, record: Tlsa) -> None:
        with path.open("a") as handle:
            handle.write(f"{owner} 300 IN TLSA {record}\n")

    return Backend(provider, lambda o: zonefile_read(path, o), external_add, zone=ZONE)


class TestRfc2136(ProviderContract):
    @pytest.fixture
    def backend(self, rfc2136_backend: Backend) -> Backend:
        return rfc2136_backend


class TestZoneFile(ProviderContract):
    @pytest.fixture
    def backend(self, zonefile_backend: Backend) -> Backend:
        return zonefile_backend


class TestCloudflare(ProviderContract):
    secret_values = ("test-token-0123456789",)

    @pytest.fixture
    def backend(self, cloudflare_backend: Backend) -> Backend:
        return cloudflare_backend


class TestPowerDns(ProviderContract):
    """PowerDNS Authoritative, the real server: read back by DNS from its own port."""

    @pytest.fixture
    def backend(self, powerdns: PowerDns) -> Backend:
        from conftest import powerdns_backend_for

        backend: Backend = powerdns_backend_for(powerdns)
        self.secret_values = (powerdns.api_key,)
        return backend
