"""Key rollover with the real ACME clients against Pebble, BIND (RFC 2136) and Postfix.

For certbot, lego and dehydrated, each with its own Postfix (its own port, so its own
TLSA owner name) serving an ECDSA and an RSA chain that the client issued:
1. first issuance and first sync: both next keys are made (0600) and pre-published;
2. a renewal reusing the key: the client's hook deploys it at once;
3. a renewal with the next key (a CSR from ``tlsa-manager key csr``): deployed at once,
   a fresh next key is pre-published, the old key's record is gone once the old chain is;
4. a renewal with a key the tool never saw: staged, gated, deployed by the next sync;
5. a failing hook: the client logs the hook's exit code and one-line message and keeps
   the new certificate.
After every step ``openssl s_client -dane_tlsa_rrdata`` (after steps 1, 3 and 4 per
record kind too) and Postfix's ``posttls-finger`` accept the server against the RRset
Unbound validates.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest

from tlsa_manager.certs import load_chain
from tlsa_manager.records import MatchingType, Selector, Tlsa, Usage, digest, owner_name, spki_der

from acme_servers import Certbot, Dehydrated, Lego, Pebble, Ran, tlsa_manager
from conftest import bind_read, rfc2136_config
from servers import ZONE, Bind, Postfix, Unbound, posttls_finger, require

HOST = f"mx.{ZONE}"
KINDS = ("ecdsa", "rsa")
GATE = 2 * 2 + 1 + 0.7  # 2 x TTL(2 s) + slack(1 s), and a little


@pytest.fixture(scope="module")
def acme(bind: Bind) -> Iterator[dict[str, Any]]:
    require("pebble", "certbot", "lego", "dehydrated", "unbound", "postfix", "posttls-finger", "openssl", "unshare")
    root = Path(tempfile.mkdtemp(prefix="tlsa-acme-"))
    root.chmod(0o755)
    unbound = Unbound(root / "unbound", bind)
    pebble = Pebble(root / "pebble")
    try:
        unbound.start()
        pebble.start()
        yield {"root": root, "bind": bind, "unbound": unbound, "pebble": pebble}
    finally:
        try:
            pebble.stop()
        finally:
            unbound.stop()
            shutil.rmtree(root, ignore_errors=True)


def key_record(spki: bytes) -> Tlsa:
    return Tlsa(Usage.DANE_EE, Selector.SPKI, MatchingType.SHA2_256, digest(MatchingType.SHA2_256, spki))


@dataclass
class Site:
    """One client's MX host: live and staged folders, Postfix on its own port, a config."""

    acme: dict[str, Any]
    name: str
    postfix: Postfix | None = None
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.acme["root"] / self.name
        for d in ("live", "staged", "state"):
            (self.root / d).mkdir(parents=True)

    @property
    def config(self) -> Path:
        return self.root / "tlsa-manager.toml"

    def live(self, kind: str) -> Path:
        return self.root / "live" / f"{kind}.pem"

    def install(self, kind: str, key: Path, fullchain: Path) -> None:
        """The operator's first install: the client's key and chain as Postfix's one file."""
        self.live(kind).write_bytes(key.read_bytes().rstrip(b"\n") + b"\n" + fullchain.read_bytes())

    def start(self) -> None:
        bind = self.acme["bind"]
        self.postfix = Postfix(self.root / "postfix", HOST, [self.live(k) for k in KINDS]).start()
        self.config.write_text(rfc2136_config(self.root / "state", bind, HOST, f"""
ports = [{self.postfix.port}]
certs = [{", ".join(json.dumps(str(self.live(k))) for k in KINDS)}]
staged_dir = "{self.root / 'staged'}"
reload = {json.dumps(self.postfix.reload)}
probe = "127.0.0.1"
probe_port = {self.postfix.port}
auto_next_keys = true
"""))

    def stop(self) -> None:
        if self.postfix is not None:
            self.postfix.stop()

    def hook(self, client: str, *extra: str, config: Path | None = None) -> list[str]:
        return tlsa_manager("--config", config or self.config, "hook", client, *extra)

    def cli(self, *args: str | Path) -> Ran:
        result = subprocess.run(tlsa_manager("--config", self.config, *args), capture_output=True, text=True,
                                timeout=180)
        return Ran(result.returncode, result.stdout + result.stderr)

    def next_key(self, kind: str) -> Path:
        return self.root / "state" / "next-keys" / HOST / f"{kind}.key"

    def spki(self, path: Path) -> bytes:
        chain = load_chain(path)
        assert chain.key is not None
        return spki_der(chain.key)

    def csr(self, kind: str) -> Path:
        """``tlsa-manager key csr HOST --type KIND`` > file, as the recipes do."""
        result = subprocess.run(tlsa_manager("--config", self.config, "key", "csr", HOST, "--type", kind),
                                capture_output=True, timeout=60)
        assert result.returncode == 0, result.stderr
        path = self.root / f"next-{kind}-{time.monotonic_ns()}.csr"
        path.write_bytes(result.stdout)
        return path

    # -- what senders see -------------------------------------------------------

    def rrset(self) -> set[Tlsa]:
        """The RRset as Unbound validates it, once both BIND servers serve the same one (the
        hook returns without waiting for a lagging secondary; DNS converging is not its job)."""
        assert self.postfix is not None
        owner = owner_name(HOST, self.postfix.port)
        bind = self.acme["bind"]
        deadline = time.monotonic() + 20
        while bind_read(bind.primary.port, owner) != bind_read(bind.secondary.port, owner):
            assert time.monotonic() < deadline, f"{self.name}: the secondary does not catch up"
            time.sleep(0.2)
        time.sleep(1.2)  # unbound's cache-max-ttl is 1 s
        query = dns.message.make_query(owner, dns.rdatatype.TLSA, want_dnssec=True)
        response = dns.query.udp(query, "127.0.0.1", port=self.acme["unbound"].port, timeout=5)
        assert response.flags & dns.flags.AD, "the TLSA answer must validate (AD)"
        return {Tlsa.from_rdata(r) for rrset in response.answer if rrset.rdtype == dns.rdatatype.TLSA for r in rrset}

    def openssl_accepts(self, records: set[Tlsa], algorithm: str) -> bool:
        assert self.postfix is not None
        args = ["openssl", "s_client", "-brief", "-starttls", "smtp", "-connect", f"127.0.0.1:{self.postfix.port}",
                "-servername", HOST, "-dane_tlsa_domain", HOST, "-verify_return_error", "-tls1_2",
                "-cipher", "aRSA" if algorithm == "rsa" else "aECDSA"]
        for record in sorted(records):
            args += ["-dane_tlsa_rrdata", record.to_text()]
        result = subprocess.run(args, input=b"QUIT\r\n", capture_output=True, timeout=30)
        return result.returncode == 0 and b"Verification: OK" in result.stdout + result.stderr

    def senders_accept(self, step: str, *, each_kind: bool = False) -> set[Tlsa]:
        """Both verifiers for every key type; with ``each_kind`` also every record kind on
        its own (I-1: "3 1 1" alone and "2 1 1" alone must each match)."""
        assert self.postfix is not None
        records = self.rrset()
        for algorithm in KINDS:
            assert self.openssl_accepts(records, algorithm), f"{self.name} {step}: openssl rejects {algorithm}"
            for kind in {r.kind for r in records} if each_kind else ():
                subset = {r for r in records if r.kind == kind}
                assert self.openssl_accepts(subset, algorithm), f"{self.name} {step}: {kind} alone, {algorithm}"
            out = posttls_finger(self.postfix, self.acme["unbound"], algorithm)
            assert "Verified TLS connection established" in out, f"{self.name} {step}: posttls-finger: {out[-600:]}"
        return records


# ---------------------------------------------------------------- the clients


class Client:
    """What the scenario asks of a client; each subclass uses its documented commands."""

    name = ""
    #: how the client logs a hook that exited 2 (its own words)
    hook_failed = ""

    def __init__(self, site: Site) -> None:
        self.site = site

    def issue(self) -> dict[str, tuple[Path, Path]]:
        raise NotImplementedError

    def renew(self, kind: str, *, reuse_key: bool, hook: list[str] | None = None) -> Ran:
        raise NotImplementedError

    def renew_with_next_key(self, kind: str) -> Ran:
        raise NotImplementedError

    def chain_file(self, kind: str) -> Path:
        raise NotImplementedError

    def hook_after(self, issued: Ran, fullchain: Path) -> Ran:
        """The recipe's second line when the client runs no hook for a CSR: ``hook generic``
        with the full chain and no key (it is the next key)."""
        assert issued.code == 0, issued.output
        hook = subprocess.run(self.site.hook("generic", "--cert", str(fullchain), "--host", HOST),
                              capture_output=True, text=True, timeout=180)
        return Ran(hook.returncode, issued.output + hook.stdout + hook.stderr)


class CertbotClient(Client):
    name = "certbot"
    hook_failed = "Hook 'deploy-hook' reported error code 2"

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.certbot = Certbot(site.root / "certbot", site.acme["pebble"], HOST)

    def issue(self) -> dict[str, tuple[Path, Path]]:
        return {kind: self.certbot.issue(kind) for kind in KINDS}

    def renew(self, kind: str, *, reuse_key: bool, hook: list[str] | None = None) -> Ran:
        return self.certbot.renew(kind, hook or self.site.hook("certbot"), reuse_key=reuse_key)

    def renew_with_next_key(self, kind: str) -> Ran:
        # certonly --csr runs no deploy hook: the recipe calls the hook itself, without --key.
        out = self.site.root / f"certbot-csr-{kind}-{time.monotonic_ns()}"
        return self.hook_after(self.certbot.issue_csr(self.site.csr(kind), out), out / "fullchain.pem")

    def chain_file(self, kind: str) -> Path:
        return self.certbot.lineage(kind) / "fullchain.pem"


class LegoClient(Client):
    name = "lego"
    hook_failed = "exit status 2"

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.lego = Lego(site.root / "lego", site.acme["pebble"], HOST)

    def issue(self) -> dict[str, tuple[Path, Path]]:
        return {kind: self.lego.issue(kind) for kind in KINDS}

    def renew(self, kind: str, *, reuse_key: bool, hook: list[str] | None = None) -> Ran:
        return self.lego.renew(kind, hook or self.site.hook("lego"), reuse_key=reuse_key)

    def renew_with_next_key(self, kind: str) -> Ran:
        # lego --csr renew runs the renew hook; LEGO_CERT_KEY_PATH names lego's old key
        # file, so the hook takes the next key the certificate was issued for.
        return self.lego.renew(kind, self.site.hook("lego"), reuse_key=False, csr=self.site.csr(kind))

    def chain_file(self, kind: str) -> Path:
        return self.lego.files(kind)[1]


class DehydratedClient(Client):
    name = "dehydrated"
    hook_failed = "deploy_cert hook returned with non-zero exit code"

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.dehydrated = Dehydrated(site.root / "dehydrated", site.acme["pebble"], HOST, hook=["true"])

    def issue(self) -> dict[str, tuple[Path, Path]]:
        ran = self.dehydrated.issue_all()
        assert ran.code == 0, ran.output
        self.dehydrated.hook = self.site.hook("dehydrated")
        return {kind: self.dehydrated.files(kind) for kind in KINDS}

    def renew(self, kind: str, *, reuse_key: bool, hook: list[str] | None = None) -> Ran:
        saved = self.dehydrated.hook
        self.dehydrated.hook = hook or saved
        try:
            return self.dehydrated.renew(kind, reuse_key=reuse_key)
        finally:
            self.dehydrated.hook = saved

    def renew_with_next_key(self, kind: str) -> Ran:
        # --signcsr prints certificate + chain and runs no hook: the recipe calls it.
        out = self.site.root / f"dehydrated-csr-{kind}-{time.monotonic_ns()}.pem"
        return self.hook_after(self.dehydrated.sign_csr(self.site.csr(kind), out), out)

    def chain_file(self, kind: str) -> Path:
        return self.dehydrated.files(kind)[1]


# ---------------------------------------------------------------- the scenario


def hook_ok(ran: Ran) -> bool:
    """The client and its hook succeeded: a secondary that has not caught up within the
    hook's few seconds (H18 risk) is printed but does not fail the hook (cli.md)."""
    return ran.code == 0


def leaf_pem_of(path: Path) -> bytes:
    text = path.read_bytes()
    start = text.index(b"-----BEGIN CERTIFICATE-----")
    end = text.index(b"-----END CERTIFICATE-----", start) + len(b"-----END CERTIFICATE-----")
    return text[start:end]


def rollover(site: Site, client: Client) -> None:
    # 1. first issuance (the client's own keys), installed by hand, first sync
    for kind, (key, chain) in client.issue().items():
        site.install(kind, key, chain)
    site.start()
    first = site.cli("sync", HOST)
    assert first.code == 0, first.output
    next_spki = {}
    for kind in KINDS:
        path = site.next_key(kind)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        next_spki[kind] = site.spki(path)
    records = site.senders_accept("first sync", each_kind=True)
    assert {key_record(s) for s in next_spki.values()} <= records, "both next keys are pre-published"
    time.sleep(GATE)

    # 2. renewal reusing the key: deployed at once by the client's own hook (one key type:
    # both are renewed with the next key below)
    for kind in ("ecdsa",):
        before = site.spki(site.live(kind))
        ran = client.renew(kind, reuse_key=True)
        assert hook_ok(ran) and f"deployed staged {kind}.pem (" in ran.output, ran.output
        assert leaf_pem_of(client.chain_file(kind)) in site.live(kind).read_bytes()
        assert site.spki(site.live(kind)) == before
    site.senders_accept("renewal reusing the key")

    # 3. renewal with the next key (RSA and ECDSA): at once, fresh next keys, old records gone
    for kind in KINDS:
        old = site.spki(site.live(kind))
        ran = client.renew_with_next_key(kind)
        assert hook_ok(ran) and f"deployed staged {kind}.pem (" in ran.output, ran.output
        assert "is in use now" in ran.output and "is pre-published" in ran.output, ran.output
        assert site.spki(site.live(kind)) == next_spki[kind], "the new chain uses the pre-published key"
        fresh = site.spki(site.next_key(kind))
        assert fresh not in (next_spki[kind], old)
        records = site.rrset()
        assert key_record(fresh) in records and key_record(old) not in records, ran.output
        next_spki[kind] = fresh
    records = site.senders_accept("renewal with the next key", each_kind=True)
    assert {key_record(s) for s in next_spki.values()} <= records

    # 4. renewal with a key the tool never saw: staged, gated, deployed by the next sync
    before = site.live("ecdsa").read_bytes()
    ran = client.renew("ecdsa", reuse_key=False)
    assert hook_ok(ran) and "stays staged" in ran.output, ran.output  # "not before T", or a lagging server
    assert site.live("ecdsa").read_bytes() == before
    unknown = site.spki(site.root / "staged" / "ecdsa.pem")
    assert key_record(unknown) in site.senders_accept("unknown key staged")
    # the timer's syncs: the hook returned at once, maybe before the secondary served the
    # new record (the gate counts from an observation of every server serving it), so the
    # first may deploy already or only observe; after the gate the second surely deploys
    observed = site.cli("sync", HOST)
    assert observed.code == 0, observed.output
    if "deployed staged ecdsa.pem" not in observed.output:
        time.sleep(GATE)
        deploy = site.cli("sync", HOST)
        assert deploy.code == 0 and "deployed staged ecdsa.pem" in deploy.output, deploy.output
    assert site.spki(site.live("ecdsa")) == unknown
    records = site.senders_accept("unknown key deployed", each_kind=True)
    assert key_record(next_spki["ecdsa"]) in records and len(
        [r for r in records if r.kind == "3 1 1"]) == 4  # two live keys, two next keys

    # 5. a failing hook: the client logs its exit code and one line, and keeps the certificate
    broken = site.root / "missing.toml"
    live_before = site.live("rsa").read_bytes()
    chain_before = leaf_pem_of(client.chain_file("rsa"))
    ran = client.renew("rsa", reuse_key=True, hook=site.hook(client.name, config=broken))
    assert f"tlsa-manager: error: {broken}: no such configuration file" in ran.output, ran.output
    assert client.hook_failed in ran.output, ran.output
    new_leaf = leaf_pem_of(client.chain_file("rsa"))
    assert new_leaf != chain_before, "the client kept the new certificate"
    assert site.live("rsa").read_bytes() == live_before
    site.senders_accept("after a failing hook")


CLIENTS: dict[str, Callable[[Site], Client]] = {
    "certbot": CertbotClient,
    "lego": LegoClient,
    "dehydrated": DehydratedClient,
}


@pytest.fixture(scope="module")
def rollovers(acme: dict[str, Any]) -> dict[str, str | None]:
    """The three clients' rollovers run side by side (each has its own Postfix, port and
    TLSA owner name; they share Pebble, BIND and Unbound): most of the time is spent
    waiting for gates and clients, so this keeps the file within a few minutes."""
    import traceback
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str) -> str | None:
        site = Site(acme, name)
        try:
            rollover(site, CLIENTS[name](site))
            return None
        except BaseException:  # reported by that client's test
            return traceback.format_exc()
        finally:
            site.stop()

    with ThreadPoolExecutor(len(CLIENTS)) as pool:
        futures = {name: pool.submit(one, name) for name in CLIENTS}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(CLIENTS))
def test_rollover_with_real_client(rollovers: dict[str, str | None], name: str) -> None:
    failure = rollovers[name]
    assert failure is None, failure
