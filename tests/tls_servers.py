"""TLS services other than SMTP STARTTLS, real and on loopback high ports.

Dovecot from Debian (IMAP with STARTTLS, IMAPS, POP3 with STLS, POP3S) and
``openssl s_server`` for HTTPS-style implicit TLS on 443, where no packaged server
fits.  Each serves an ECDSA and an RSA chain at once, is started from files in a
temp dir and stopped by pid.  Postfix's implicit-TLS (465) listener lives in
``servers.Postfix`` (``wrapper_port``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from servers import free_port, require, terminate


def wait_listening(port: int, process: subprocess.Popen[bytes] | None, what: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    text = log.read_text()[-2000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not listen on {port}: {text}")


@dataclass
class Daemon:
    """A server process of ours, stopped by its pid."""

    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
        self.process = None


@dataclass
class Dovecot(Daemon):
    """Dovecot IMAP + POP3, each with STARTTLS/STLS and implicit TLS, RSA + ECDSA chains.

    ``chains`` maps ``ecdsa``/``rsa`` to (certificate chain file, key file).
    """

    root: Path
    chains: dict[str, tuple[Path, Path]]
    ports: dict[str, int] = field(
        default_factory=lambda: {name: free_port() for name in ("imap", "imaps", "pop3", "pop3s")}
    )
    #: False: no TLS at all (``ssl = no``): IMAP without STARTTLS, POP3 without STLS
    tls: bool = True

    def _listeners(self, protocol: str) -> str:
        """The login service of ``protocol``: one plain (STARTTLS/STLS) and one implicit-TLS port."""
        implicit = f"  inet_listener {protocol}s {{\n    port = {self.ports[protocol + 's']}\n    ssl = yes\n  }}\n"
        return (f"service {protocol}-login {{\n"
                f"  inet_listener {protocol} {{\n    port = {self.ports[protocol]}\n  }}\n"
                f"{implicit if self.tls else ''}}}\n")

    def start(self) -> Dovecot:
        require("dovecot")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        (ecdsa_cert, ecdsa_key), (rsa_cert, rsa_key) = self.chains["ecdsa"], self.chains["rsa"]
        dh = Path("/usr/share/dovecot/dh.pem")
        conf = self.root / "dovecot.conf"
        conf.write_text(f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
instance_name = tlsa-test-{self.ports['imap']}
protocols = imap pop3
listen = 127.0.0.1
ssl = {"yes" if self.tls else "no"}
ssl_cert = <{ecdsa_cert}
ssl_key = <{ecdsa_key}
ssl_alt_cert = <{rsa_cert}
ssl_alt_key = <{rsa_key}
{f"ssl_dh = <{dh}" if dh.exists() else ""}
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain
passdb {{
  driver = static
  args = password=unused-test-password
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
{self._listeners("imap")}{self._listeners("pop3")}service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
""")
        self.process = subprocess.Popen(["dovecot", "-F", "-c", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, port in self.ports.items():
            if self.tls or not name.endswith("s"):
                wait_listening(port, self.process, "dovecot", self.root / "dovecot.log")
        return self


@dataclass
class SServer(Daemon):
    """``openssl s_server`` serving an ECDSA chain and (``-dcert``) an RSA chain on one port."""

    root: Path
    chains: dict[str, tuple[Path, Path, Path]]  # algorithm -> (leaf, key, intermediates)
    port: int = field(default_factory=free_port)

    def start(self) -> SServer:
        require("openssl")
        self.root.mkdir(parents=True, exist_ok=True)
        (leaf, key, inter), (rleaf, rkey, rinter) = self.chains["ecdsa"], self.chains["rsa"]
        log = self.root / "s_server.log"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                ["openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{self.port}", "-www",
                 "-cert", str(leaf), "-key", str(key), "-cert_chain", str(inter),
                 "-dcert", str(rleaf), "-dkey", str(rkey), "-dcert_chain", str(rinter)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env={**os.environ, "OPENSSL_CONF": "/dev/null"})
        wait_listening(self.port, self.process, "openssl s_server", log)
        return self


def s_client_dane(port: int, host: str, records: list[str], algorithm: str, starttls: str | None) -> bool:
    """openssl's own DANE verifier (the oracle): does a client that knows these TLSA
    records accept the chain this port presents when offering only ``algorithm``?"""
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", host,
            "-dane_tlsa_domain", host, "-verify_return_error", "-tls1_2", "-brief",
            "-cipher", "aECDSA" if algorithm == "ecdsa" else "aRSA"]
    for record in records:
        args += ["-dane_tlsa_rrdata", record]
    if starttls:
        args += ["-starttls", starttls]
    result = subprocess.run(args, input=b"", capture_output=True, timeout=30)
    text = (result.stdout + result.stderr).decode("utf-8", "replace")
    # -verify_return_error: a chain no record authenticates aborts the handshake
    return result.returncode == 0 and "Verification: OK" in text and "DANE TLSA" in text
