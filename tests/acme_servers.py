"""Pebble (the ACME test server) and the real ACME clients certbot, lego and dehydrated.

Pebble runs on loopback high ports in a temp dir with its own TLS certificate,
challenge validation switched off (``PEBBLE_VA_ALWAYS_VALID``), no random nonce
rejections and reused authorizations (quick, deterministic orders); it is stopped by
pid.  Each client is driven with its documented command line (docs/hooks.md), trusts
Pebble's TLS certificate its own way (``REQUESTS_CA_BUNDLE``, ``LEGO_CA_CERTIFICATES``,
curl's ``--cacert``) and calls the real ``tlsa-manager hook`` as its deploy hook.
"""

from __future__ import annotations

import json
import os
import shlex
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from conftest import CLI
from servers import free_port, require, run, terminate

HOOK_TIMEOUT = 180


def tlsa_manager(*args: str | Path) -> list[str]:
    """The CLI of the environment under test as a command line (never a bare name from PATH)."""
    return [*CLI, *[str(a) for a in args]]


@dataclass
class Pebble:
    root: Path
    port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def tls_ca(self) -> Path:
        """Pebble's own (self-signed) TLS certificate, which the clients must trust."""
        return self.root / "tls.pem"

    def start(self) -> Pebble:
        require("pebble", "openssl")
        self.root.mkdir(parents=True, exist_ok=True)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(self.root / "tls.key"), "-out", str(self.tls_ca), "-days", "7",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:FALSE")
        config = self.root / "pebble.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.tls_ca), "privateKey": str(self.root / "tls.key"),
            "httpPort": free_port(), "tlsPort": free_port(), "ocspResponderURL": "",
            "externalAccountBindingRequired": False}}))
        env = dict(os.environ, PEBBLE_VA_ALWAYS_VALID="1", PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0",
                   PEBBLE_AUTHZREUSE="100")
        with open(self.root / "pebble.log", "wb") as log:
            self.process = subprocess.Popen(["pebble", "-config", str(config)], stdout=log,
                                            stderr=subprocess.STDOUT, env=env, cwd=self.root)
        context = ssl.create_default_context(cafile=str(self.tls_ca))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pebble exited: {(self.root / 'pebble.log').read_text()[-1500:]}")
            try:
                with urllib.request.urlopen(self.directory, context=context, timeout=2) as response:
                    if b"newOrder" in response.read():
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("pebble did not answer")

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
        self.process = None


@dataclass
class Ran:
    """One client run: exit code and everything it printed (its log of the hook)."""

    code: int
    output: str


def _run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Ran:
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=HOOK_TIMEOUT)
    return Ran(result.returncode, result.stdout + result.stderr)


KEY_TYPES = {"certbot": {"ecdsa": "ecdsa", "rsa": "rsa"}, "lego": {"ecdsa": "ec256", "rsa": "rsa2048"}}


@dataclass
class AcmeClient:
    """A client's own folder, the Pebble it talks to, and the one name it asks for."""

    root: Path
    pebble: Pebble
    host: str
    #: the environment variable through which the client trusts Pebble's TLS certificate
    ca_variable: ClassVar[str] = ""

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, **{self.ca_variable: str(self.pebble.tls_ca)})


@dataclass
class Certbot(AcmeClient):
    """certbot with its own config/work/logs folders; lineage ``mx-<kind>`` per key type."""

    ca_variable: ClassVar[str] = "REQUESTS_CA_BUNDLE"

    def _base(self) -> list[str]:
        return ["certbot", "--config-dir", str(self.root / "conf"), "--work-dir", str(self.root / "work"),
                "--logs-dir", str(self.root / "logs"), "-n", "--server", self.pebble.directory,
                "--agree-tos", "-m", "hostmaster@example.test", "--no-eff-email"]

    # Pebble skips validation; the manual authenticator with a no-op hook stands for any.
    AUTH: ClassVar[list[str]] = ["--manual", "--preferred-challenges", "http", "--manual-auth-hook", "true"]

    def lineage(self, kind: str) -> Path:
        return self.root / "conf" / "live" / f"mx-{kind}"

    def issue(self, kind: str) -> tuple[Path, Path]:
        ran = _run([*self._base(), "certonly", *self.AUTH, "--cert-name", f"mx-{kind}",
                    "--key-type", KEY_TYPES["certbot"][kind], "-d", self.host], self.env)
        assert ran.code == 0, ran.output
        return self.lineage(kind) / "privkey.pem", self.lineage(kind) / "fullchain.pem"

    def renew(self, kind: str, hook: list[str], *, reuse_key: bool) -> Ran:
        """``certbot renew`` with the deploy hook; ``--reuse-key`` or ``--new-key``."""
        return _run([*self._base(), "renew", "--cert-name", f"mx-{kind}", "--force-renewal",
                     "--no-random-sleep-on-renew", "--reuse-key" if reuse_key else "--new-key",
                     "--deploy-hook", shlex.join(hook)], self.env)

    def issue_csr(self, csr: Path, out: Path) -> Ran:
        """``certbot certonly --csr``: certbot never sees the key (it runs no deploy hook)."""
        out.mkdir(parents=True, exist_ok=True)
        return _run([*self._base(), "certonly", *self.AUTH, "--csr", str(csr),
                     "--cert-path", str(out / "cert.pem"), "--chain-path", str(out / "chain.pem"),
                     "--fullchain-path", str(out / "fullchain.pem")], self.env)


@dataclass
class Lego(AcmeClient):
    """lego with one ``--path`` per key type (its file names do not say the key type)."""

    ca_variable: ClassVar[str] = "LEGO_CA_CERTIFICATES"

    def _base(self, kind: str) -> list[str]:
        return ["lego", "--server", self.pebble.directory, "--email", "hostmaster@example.test", "--accept-tos",
                "--path", str(self.root / kind), "--key-type", KEY_TYPES["lego"][kind],
                "--http", "--http.port", f"127.0.0.1:{free_port()}"]

    def files(self, kind: str) -> tuple[Path, Path]:
        base = self.root / kind / "certificates" / self.host
        return base.with_name(f"{self.host}.key"), base.with_name(f"{self.host}.crt")

    def issue(self, kind: str) -> tuple[Path, Path]:
        ran = _run([*self._base(kind), "-d", self.host, "run"], self.env)
        assert ran.code == 0, ran.output
        return self.files(kind)

    def renew(self, kind: str, hook: list[str], *, reuse_key: bool, csr: Path | None = None) -> Ran:
        """``lego renew --renew-hook``: ``--reuse-key``, a new key, or ``--csr`` (a next key's CSR)."""
        args = [*self._base(kind)]
        args += ["--csr", str(csr)] if csr else ["-d", self.host]
        args += ["renew", "--days", "99999", "--no-random-sleep", "--renew-hook", shlex.join(hook)]
        if reuse_key:
            args.append("--reuse-key")
        return _run(args, self.env)


@dataclass
class Dehydrated(AcmeClient):
    """dehydrated with its own config (curl trusts Pebble through ``CURL_OPTS``);
    aliases ``mx-ecdsa`` and ``mx-rsa`` for one name."""

    hook: list[str] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.root / "config"

    def write_config(self, *, renew_key: bool) -> None:
        (self.root / "wellknown").mkdir(parents=True, exist_ok=True)
        (self.root / "certs" / "mx-rsa").mkdir(parents=True, exist_ok=True)
        (self.root / "certs" / "mx-rsa" / "config").write_text('KEY_ALGO="rsa"\nKEYSIZE="2048"\n')
        (self.root / "domains.txt").write_text(f"{self.host} > mx-ecdsa\n{self.host} > mx-rsa\n")
        hook = self.root / "hook.sh"
        # every event passed on, as docs/hooks.md says: the hook acts on deploy_cert only
        hook.write_text(f'#!/bin/sh\nexec {shlex.join(self.hook)} "$@"\n')
        hook.chmod(0o755)
        self.config.write_text(f"""CA="{self.pebble.directory}"
BASEDIR="{self.root}"
WELLKNOWN="{self.root}/wellknown"
CHALLENGETYPE="http-01"
KEY_ALGO="prime256v1"
CURL_OPTS="--cacert {self.pebble.tls_ca}"
HOOK="{hook}"
PRIVATE_KEY_RENEW="{'yes' if renew_key else 'no'}"
CONTACT_EMAIL="hostmaster@example.test"
""")

    def files(self, kind: str) -> tuple[Path, Path]:
        certdir = self.root / "certs" / f"mx-{kind}"
        return certdir / "privkey.pem", certdir / "fullchain.pem"

    def issue_all(self) -> Ran:
        """Register, then issue both aliases (the deploy_cert hook runs for each)."""
        self.write_config(renew_key=False)
        ran = _run(["dehydrated", "-f", str(self.config), "--register", "--accept-terms"])
        assert ran.code == 0, ran.output
        return _run(["dehydrated", "-f", str(self.config), "--cron"])

    def renew(self, kind: str, *, reuse_key: bool) -> Ran:
        """``dehydrated --cron --force`` for one alias; ``PRIVATE_KEY_RENEW`` picks the key."""
        self.write_config(renew_key=not reuse_key)
        return _run(["dehydrated", "-f", str(self.config), "--cron", "--force", "--domain", self.host,
                     "--alias", f"mx-{kind}"])

    def sign_csr(self, csr: Path, out: Path) -> Ran:
        """``dehydrated --signcsr``: prints the certificate and its chain (no hook runs)."""
        result = subprocess.run(["dehydrated", "-f", str(self.config), "--signcsr", str(csr)],
                                capture_output=True, text=True, timeout=HOOK_TIMEOUT)
        if result.returncode == 0:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(result.stdout)
        return Ran(result.returncode, result.stderr)
