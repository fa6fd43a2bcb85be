"""Shared fixtures: the CLI runner, the openssl oracle, generated keys and chains."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import dns.name
import pytest

from tlsa_manager.cli import main
from tlsa_manager.records import Tlsa

import pki

if TYPE_CHECKING:  # the fixtures import these lazily: the servers are optional per test
    from tlsa_manager.testing import Backend, Held

    from cloudflare_fake import FakeCloudflare
    from servers import Bind, Postfix, PowerDns

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
LE_DATA = REPO / "tlsa_manager" / "data" / "letsencrypt"

# The CLI of the environment under test: the console script installed next to this
# interpreter, never whatever `tlsa-manager` the PATH happens to find.
VENV_BIN = Path(sys.executable).parent
CONSOLE_SCRIPT = VENV_BIN / "tlsa-manager"
CLI = [sys.executable, "-m", "tlsa_manager"]
# PATH for commands run "as written" (README blocks): this environment first, then the
# system's directories only, so nothing installed elsewhere on the machine can answer.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def env_path(*front: Path) -> str:
    return ":".join([*(str(p) for p in front), str(VENV_BIN), SYSTEM_PATH])


def stray_cli() -> str | None:
    """A `tlsa-manager` on the PATH that is not this environment's (a hand install)."""
    found = shutil.which("tlsa-manager")
    if found is None or Path(found).resolve() == CONSOLE_SCRIPT.resolve():
        return None
    return found


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class CliRunner(Protocol):
    """The ``cli`` fixture: run ``tlsa-manager ARGS`` (strings, paths, numbers) in-process."""

    def __call__(self, *args: str | Path | int) -> Result: ...


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Run ``tlsa-manager ARGS`` in-process with a private state directory."""
    monkeypatch.setenv("TLSA_MANAGER_STATE_DIR", str(tmp_path / "state"))

    def run(*args: str | Path | int) -> Result:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=True).stdout


def openssl_tlsa_data(path: Path, selector: int, mtype: int, *, key: bool = False) -> str:
    """The association data as the openssl CLI computes it (the independent oracle)."""
    if key:
        selected = openssl("pkey", "-in", str(path), "-pubout", "-outform", "DER")
    elif selector == 0:
        selected = openssl("x509", "-in", str(path), "-outform", "DER")
    else:
        pub = openssl("x509", "-in", str(path), "-noout", "-pubkey")
        selected = openssl("pkey", "-pubin", "-outform", "DER", stdin=pub)
    if mtype == 0:
        return selected.hex()
    algo = {1: "-sha256", 2: "-sha512"}[mtype]
    out = openssl("dgst", algo, "-r", stdin=selected).decode()
    return out.split()[0].lower()


@pytest.fixture(scope="session")
def key_chains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """For each key kind: a leaf cert, its fullchain, its key, under a two-level CA."""
    base = tmp_path_factory.mktemp("pki")
    root = pki.make_ca("Test Root", pki.make_key("p384"))
    inter = pki.make_ca("Test R1", pki.make_key("rsa2048"), issuer=root)
    out: dict[str, dict[str, Path]] = {}
    for kind in pki.KEY_KINDS:
        leaf = pki.make_leaf([f"{kind}.example.test"], inter, key=pki.make_key(kind))
        d = base / kind
        out[kind] = {
            "cert": pki.write(d / "cert.pem", leaf.pem),
            "fullchain": pki.write(d / "fullchain.pem", leaf.pem, inter.pem),
            "key": pki.write(d / "privkey.pem", leaf.key_pem),
            "inter": pki.write(d / "inter.pem", inter.pem),
        }
    return out


# ---------------------------------------------------------------- DNS server fixtures


@pytest.fixture(scope="session")
def bind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bind]:
    """A real BIND primary + secondary for the whole session (tests use unique names)."""
    import shutil
    import tempfile

    from servers import Bind

    # named runs as user bind: its folders must be reachable, pytest's tmp is 0700.
    root = Path(tempfile.mkdtemp(prefix="tlsa-bind-"))
    server = Bind(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def rfc2136_config(state: Path, bind: Bind, host: str, host_lines: str) -> str:
    """A config publishing ``host`` to the test BIND by RFC 2136, gates on both servers,
    with the small TTL, slack and negative TTL that keep rollover tests quick."""
    return f"""
state_dir = "{state}"
[providers.bind]
type = "rfc2136"
server = "{bind.primary.endpoint}"
tsig_key_file = "{bind.key_file}"
[hosts."{host}"]
provider = "bind"
{host_lines.strip()}
ttl = 2
slack = "1s"
negative_ttl = 1
nameservers = ["{bind.primary.endpoint}", "{bind.secondary.endpoint}"]
"""


def probed_host_lines(postfix: Postfix, cert: Path, staged: Path) -> str:
    """Host lines for a host whose MTA is a test Postfix: the host's own port (probed there
    without ``probe_port``), ``cert`` live, ``staged`` for renewals, Postfix reloaded."""
    return f"""
ports = [{postfix.port}]
cert = "{cert}"
staged_dir = "{staged}"
reload = {json.dumps(postfix.reload)}
probe = "127.0.0.1"
"""


def bind_read(port: int, owner: dns.name.Name | str) -> Held:
    """Read TLSA back from a BIND with plain dnspython (independent of the provider)."""
    import dns.message
    import dns.query
    import dns.rdatatype

    response = dns.query.tcp(dns.message.make_query(owner, dns.rdatatype.TLSA), "127.0.0.1", port=port, timeout=5)
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.TLSA:
            return frozenset(Tlsa.from_rdata(r) for r in rrset), rrset.ttl
    return frozenset(), None


def nsupdate_add(bind: Bind, owner: dns.name.Name | str, record: Tlsa | str) -> None:
    """Someone else's change, made with BIND's own nsupdate."""
    script = (f"server 127.0.0.1 {bind.primary.port}\nzone {bind.zone}\n"
              f"update add {owner} 300 IN TLSA {record}\nsend\n")
    subprocess.run(["nsupdate", "-k", str(bind.key_file)], input=script.encode(), check=True, capture_output=True)


def zonefile_read(path: Path, owner: dns.name.Name) -> Held:
    """Read TLSA back by parsing the file with dnspython directly."""
    import dns.rdatatype
    import dns.zone

    zone = dns.zone.from_file(str(path), relativize=False, origin=owner.parent().parent().parent())
    rdataset = zone.get_rdataset(owner, dns.rdatatype.TLSA)
    if rdataset is None:
        return frozenset(), None
    return frozenset(Tlsa.from_rdata(r) for r in rdataset), rdataset.ttl


@pytest.fixture
def cf_fake() -> Iterator[FakeCloudflare]:
    from cloudflare_fake import FakeCloudflare

    fake = FakeCloudflare().start()
    fake.add_zone("example.test")
    yield fake
    fake.stop()


@pytest.fixture
def cloudflare_backend(cf_fake: FakeCloudflare, monkeypatch: pytest.MonkeyPatch) -> Backend:
    from tlsa_manager.testing import Backend
    from tlsa_manager_providers.cloudflare import CloudflareProvider

    monkeypatch.setenv("CF_TEST_TOKEN", cf_fake.token)
    # The SDK would send these instead of the token; the provider must clear them.
    monkeypatch.setenv("CLOUDFLARE_EMAIL", "someone@example.test")
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "0123456789abcdef")
    provider = CloudflareProvider({"api_token_env": "CF_TEST_TOKEN", "api_url": cf_fake.base_url})
    zone = cf_fake.zone("example.test")

    def read_back(owner: dns.name.Name) -> Held:
        name = owner.to_text(omit_final_dot=True)
        recs = [r for r in zone.records.values() if r["name"] == name]
        if not recs:
            return frozenset(), None
        return frozenset(Tlsa.from_text("{usage} {selector} {matching_type} {certificate}".format(**r["data"]))
                         for r in recs), max(r["ttl"] for r in recs)

    def external_add(owner: dns.name.Name, record: Tlsa) -> None:
        cf_fake.add_record(zone, owner.to_text(omit_final_dot=True), record.to_text())

    return Backend(provider, read_back, external_add, zone="example.test")


@pytest.fixture(scope="session")
def powerdns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PowerDns]:
    """A real PowerDNS Authoritative with its API for the whole session (tests use unique names)."""
    from servers import PowerDns

    server = PowerDns(tmp_path_factory.mktemp("pdns"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def pdnsutil_add(powerdns: PowerDns, owner: dns.name.Name, record: Tlsa) -> None:
    """Someone else's change, made with PowerDNS's own pdnsutil (straight into the database),
    hex in upper case as some tools write it."""
    zone = powerdns.zone
    relative = owner.to_text(omit_final_dot=True).removesuffix("." + zone)
    text = record.to_text()
    head, _, data = text.rpartition(" ")
    powerdns.pdnsutil("add-record", zone, relative, "TLSA", "300", f"{head} {data.upper()}")


def powerdns_backend_for(powerdns: PowerDns, **settings: Any) -> Backend:
    from tlsa_manager.testing import Backend
    from tlsa_manager_providers.powerdns import PowerDnsProvider

    provider = PowerDnsProvider({"api_url": powerdns.api_url, "api_key_file": str(powerdns.key_file),
                                 "nameservers": [powerdns.endpoint], **settings})
    return Backend(provider, lambda o: bind_read(powerdns.port, o), lambda o, r: pdnsutil_add(powerdns, o, r),
                   zone=powerdns.zone)


# The longest tests, started first: with `pytest -n 2` (scripts/test) a long test picked
# up last would leave one worker running alone at the end of the run.
LONGEST_FIRST = (
    "test_simulation.py::test_invariant_holds_over_random_timelines",
    "test_acme_clients.py::",
    "test_e2e.py::",
    "test_truth.py::test_rollover_every_step_says_what_the_servers_serve",
    "test_fleet.py::test_eight_fleets_at_once_with_kill_9",
    "test_crash.py::",
    "test_readme.py::",
)


def _start_rank(item: pytest.Item) -> int:
    for rank, prefix in enumerate(LONGEST_FIRST):
        if prefix in item.nodeid:
            return rank
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the longest tests first; the rest keep their order (the sort is stable)."""
    items.sort(key=_start_rank)
