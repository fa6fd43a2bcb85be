"""Real BIND (primary + secondary, DNSSEC-signed, TSIG) on loopback high ports.

Started from freshly generated files in a temp dir, stopped by pid.  If a binary is
missing the tests skip loudly, except under CI=true where that is a failure.
Facts behind the settings: ../shared/docs/test-servers.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import pytest

ZONE = "example.test"


def require(*binaries: str) -> None:
    """Skip (or fail under CI=true) when a server binary is missing."""
    missing = [b for b in binaries if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        message = f"SERVER TEST NOT RUN: missing {', '.join(missing)} (run scripts/test as root to install)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    """A port free on 127.0.0.1 for both UDP and TCP."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as tcp6:
                tcp6.bind(("::1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def terminate(process: subprocess.Popen[bytes]) -> None:
    """Stop a server we started, by its pid: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def run(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr or result.stdout}")
    return result.stdout


ZONE_TEMPLATE = """$TTL 60
@       IN SOA  ns1.{zone}. hostmaster.{zone}. ( 1 60 30 3600 30 )
        IN NS   ns1.{zone}.
        IN NS   ns2.{zone}.
        IN MX   10 mx.{zone}.
ns1     IN A    127.0.0.1
ns2     IN A    127.0.0.1
mx      IN A    127.0.0.1
mx      IN AAAA ::1
"""


@dataclass
class Named:
    name: str
    directory: Path
    port: int
    rndc_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def rndc(self, keys: Path, *args: str) -> str:
        return run("rndc", "-k", str(keys / "rndc.key"), "-s", "127.0.0.1", "-p", str(self.rndc_port), *args)

    def stats(self, keys: Path) -> dict[str, int]:
        """What the server has seen (``rndc stats``): requests by opcode (QUERY, UPDATE)
        and queries by type (TLSA, SOA, DNSKEY, ...), counted since it started."""
        dump = self.directory / "named.stats"
        dump.unlink(missing_ok=True)
        self.rndc(keys, "stats")
        text = dump.read_text()
        out: dict[str, int] = {}
        for section in ("Incoming Requests", "Incoming Queries"):
            match = re.search(rf"\+\+ {section} \+\+\n((?:\s+\d+ \S+\n)+)", text)
            for line in (match.group(1) if match else "").splitlines():
                count, name = line.split()
                out[name] = int(count)
        return out

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
        terminate(self.process)
        self.process = None

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@dataclass
class Bind:
    """A signed, dynamic primary and a secondary fed by NOTIFY/IXFR, both on loopback."""

    root: Path
    zone: str = ZONE
    tsig_name: str = "dane-update"
    #: further zones on the primary only: (name, signed)
    extra_zones: tuple[tuple[str, bool], ...] = ()
    primary: Named = field(init=False)
    secondary: Named = field(init=False)

    def __post_init__(self) -> None:
        self.keys = self.root / "keys"
        self.primary = Named("primary", self.root / "pri", free_port(), free_port())
        self.secondary = Named("secondary", self.root / "sec", free_port(), free_port())

    @property
    def key_file(self) -> Path:
        return self.keys / f"{self.tsig_name}.key"

    @property
    def nameservers(self) -> list[str]:
        return [self.primary.endpoint, self.secondary.endpoint]

    def start(self, extra_zone: str = "", ttl: int = 60) -> Bind:
        require("named", "tsig-keygen", "rndc-confgen", "rndc")
        os.chmod(self.root, 0o755)
        for d in (self.keys, self.primary.directory, self.primary.directory / "keys", self.secondary.directory):
            d.mkdir(parents=True, exist_ok=True)
        (self.keys / f"{self.tsig_name}.key").write_text(run("tsig-keygen", "-a", "hmac-sha256", self.tsig_name))
        # A key the server knows but whose updates its policy refuses.
        (self.keys / "no-update.key").write_text(run("tsig-keygen", "-a", "hmac-sha256", "no-update"))
        run("rndc-confgen", "-a", "-A", "hmac-sha256", "-k", "rndc-key", "-c", str(self.keys / "rndc.key"))
        zone_text = ZONE_TEMPLATE.format(zone=self.zone).replace("$TTL 60", f"$TTL {ttl}") + extra_zone
        (self.primary.directory / f"{self.zone}.db").write_text(zone_text)
        for name, _signed in self.extra_zones:
            (self.primary.directory / f"{name}.db").write_text(ZONE_TEMPLATE.format(zone=name))
        self.set_notify(True, write_only=True)
        (self.primary.directory / "named.conf").write_text(self._primary_conf())
        (self.secondary.directory / "named.conf").write_text(self._secondary_conf())
        for path in (self.keys, self.primary.directory, self.secondary.directory):
            run("chown", "-R", "bind:bind", str(path))
        for f in self.keys.iterdir():
            os.chmod(f, 0o640)
        self._launch(self.primary)
        self._wait_signed(self.primary)
        self._launch(self.secondary)
        self._wait_signed(self.secondary)
        return self

    def _launch(self, named: Named) -> None:
        log = named.directory / "startup.log"
        named.process = subprocess.Popen(
            ["named", "-u", "bind", "-f", "-c", str(named.directory / "named.conf"), "-L", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def _wait_signed(self, named: Named, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        zone = dns.name.from_text(self.zone)
        while time.monotonic() < deadline:
            if named.process is not None and named.process.poll() is not None:
                log = (named.directory / "startup.log").read_text() if (named.directory / "startup.log").exists() else ""
                raise RuntimeError(f"named ({named.name}) exited: {log[-2000:]}")
            try:
                q = dns.message.make_query(zone, dns.rdatatype.SOA, want_dnssec=True)
                r = dns.query.udp(q, "127.0.0.1", port=named.port, timeout=1)
                if any(rr.rdtype == dns.rdatatype.RRSIG for rr in r.answer):
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"named ({named.name}) did not serve a signed {self.zone} in {timeout}s")

    def set_notify(self, on: bool, write_only: bool = False) -> None:
        """NOTIFY to the secondary on or off (off makes it lag until the next refresh)."""
        text = (f"notify explicit; also-notify {{ 127.0.0.1 port {self.secondary.port} key {self.tsig_name}; }};"
                if on else "notify no;")
        (self.primary.directory / "notify.conf").write_text(text + "\n")
        if not write_only:
            self.primary.rndc(self.keys, "reconfig")

    def _named_conf(self, named: Named, keys: tuple[str, ...], options: str) -> str:
        """What both servers' named.conf share: the key includes, the options around
        ``options``, rndc's control channel and the log file."""
        d = named.directory
        return "".join(f'include "{self.keys}/{k}.key";\n' for k in keys) + f"""options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    listen-on port {named.port} {{ 127.0.0.1; }};
    listen-on-v6 port {named.port} {{ ::1; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ any; }};
    minimal-responses yes;
{options}}};
controls {{ inet 127.0.0.1 port {named.rndc_port} allow {{ 127.0.0.1; }} keys {{ "rndc-key"; }}; }};
logging {{
    channel main {{ file "{d}/named.log" versions 2 size 20m; print-time yes; severity info; }};
    category default {{ main; }};
    category lame-servers {{ null; }};
}};
"""

    def _primary_conf(self) -> str:
        d = self.primary.directory
        return self._named_conf(self.primary, (self.tsig_name, "no-update", "rndc"), f"""\
    key-directory "{d}/keys";
    allow-transfer {{ key {self.tsig_name}; }};
    include "{d}/notify.conf";
    notify-delay 0;
""") + f"""zone "{self.zone}" {{
    type primary;
    file "{self.zone}.db";
    dnssec-policy default;
    inline-signing no;
    update-policy {{ grant {self.tsig_name} zonesub ANY; }};
}};
""" + "".join(
            f'zone "{name}" {{ type primary; file "{name}.db"; '
            + ("dnssec-policy default; inline-signing no; " if signed else "")
            + f"update-policy {{ grant {self.tsig_name} zonesub ANY; }}; }};\n"
            for name, signed in self.extra_zones)

    def _secondary_conf(self) -> str:
        return self._named_conf(self.secondary, (self.tsig_name, "rndc"), "    notify no;\n") + f"""\
primaries primary {{ 127.0.0.1 port {self.primary.port} key {self.tsig_name}; }};
zone "{self.zone}" {{ type secondary; primaries {{ primary; }}; file "{self.zone}.bk"; }};
"""

    def stop(self) -> None:
        self.secondary.stop()
        self.primary.stop()


# ---------------------------------------------------------------- Unbound


@dataclass
class Unbound:
    """A validating resolver for the test zone only, trusting the zone's own DS."""

    root: Path
    bind: Bind
    #: extra zones: name -> "anchor" (real DS), "wrong" (a DS that does not match: bogus) or "none"
    zones: dict[str, str] = field(default_factory=dict)
    # A loopback address of its own for port 53 (for tools that only read resolv.conf);
    # random so that two test runs never share one.
    address53: str = field(default_factory=lambda: f"127.53.{os.urandom(1)[0]}.{os.urandom(1)[0] % 250 + 2}")
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, trust_anchor: str | None = None) -> Unbound:
        require("unbound")
        import dns.dnssec
        import dns.rdataclass
        import dns.rdatatype

        self.root.mkdir(parents=True, exist_ok=True)
        zone = dns.name.from_text(self.bind.zone)
        if trust_anchor is None:
            answer = dns.query.tcp(dns.message.make_query(zone, dns.rdatatype.DNSKEY), "127.0.0.1",
                                   port=self.bind.primary.port, timeout=5)
            keys = answer.get_rrset(answer.answer, zone, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
            assert keys is not None
            trust_anchor = "\n".join(
                f"{zone} IN DS {dns.dnssec.make_ds(zone, key, 'SHA256')}" for key in keys if key.flags & 1)
        anchors = [trust_anchor]
        for name, mode in self.zones.items():
            zname = dns.name.from_text(name)
            if mode == "none":
                continue
            answer = dns.query.tcp(dns.message.make_query(zname, dns.rdatatype.DNSKEY), "127.0.0.1",
                                   port=self.bind.primary.port, timeout=5)
            keys = answer.get_rrset(answer.answer, zname, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
            assert keys is not None, f"{name} is not signed"
            for key in keys:
                if key.flags & 1:
                    ds = dns.dnssec.make_ds(zname, key, "SHA256")
                    text = ds.to_text()
                    if mode == "wrong":
                        text = text[:-8] + ("00000000" if not text.endswith("00000000") else "11111111")
                    anchors.append(f"{zname} IN DS {text}")
        (self.root / "anchor.ds").write_text("\n".join(anchors) + "\n")
        extra = "".join(f'    local-zone: "{name}." transparent\n' for name in self.zones)
        stubs = "".join(f'stub-zone:\n    name: "{name}"\n    stub-addr: 127.0.0.1@{self.bind.primary.port}\n'
                        for name in self.zones)
        listen53 = f"    interface: {self.address53}@53\n" if os.geteuid() == 0 else ""
        (self.root / "unbound.conf").write_text(f"""server:
    verbosity: 1
    interface: 127.0.0.1@{self.port}
{listen53}    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    username: ""
    chroot: ""
    directory: "{self.root}"
    pidfile: "{self.root}/unbound.pid"
    logfile: "{self.root}/unbound.log"
    use-syslog: no
    module-config: "validator iterator"
    so-reuseport: no
    trust-anchor-file: "{self.root}/anchor.ds"
    local-zone: "test." nodefault
    local-zone: "." refuse
    local-zone: "{self.bind.zone}." transparent
{extra}    cache-max-ttl: 1
    cache-max-negative-ttl: 1
    infra-host-ttl: 5
    serve-expired: no
    prefetch: no
    aggressive-nsec: no
    qname-minimisation: no
remote-control:
    control-enable: no
stub-zone:
    name: "{self.bind.zone}"
    stub-addr: 127.0.0.1@{self.bind.primary.port}
    stub-addr: 127.0.0.1@{self.bind.secondary.port}
{stubs}""")
        (self.root / "resolv.conf").write_text(f"nameserver {self.address53}\noptions trust-ad\n")
        self.process = subprocess.Popen(["unbound", "-d", "-c", str(self.root / "unbound.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                q = dns.message.make_query(zone, dns.rdatatype.SOA, want_dnssec=True)
                r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=1)
                if r.answer:
                    return self
            except Exception:
                time.sleep(0.1)
        raise RuntimeError(f"unbound did not answer: {(self.root / 'unbound.log').read_text()[-1500:]}")

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
        self.process = None


# ---------------------------------------------------------------- Postfix


@dataclass
class Postfix:
    """Postfix with STARTTLS on a loopback high port, serving an RSA and an ECDSA chain."""

    root: Path
    hostname: str
    chain_files: list[Path]
    port: int = field(default_factory=free_port)
    #: an implicit-TLS (smtps, port 465 style) listener too, on this port
    wrapper_port: int | None = None
    #: the smtpd listeners' process limit and options (master.cf): "1" and
    #: "-o max_idle=3600" keep one long-lived smtpd, as a busy server's are (each smtpd
    #: loads the chain files when it starts, so a file replaced without a reload is not
    #: presented until it is replaced)
    smtpd_maxproc: str = "-"
    smtpd_options: str = ""

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    def start(self) -> Postfix:
        require("postfix", "posttls-finger")
        for d in ("conf", "spool", "data"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        run("chown", "postfix", str(self.root / "data"))
        for f in self.chain_files:
            run("chgrp", "postfix", str(f))
            os.chmod(f, 0o640)
        (self.conf / "main.cf").write_text(f"""compatibility_level = 3.6
queue_directory = {self.root}/spool
data_directory = {self.root}/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = {self.hostname}
mydestination =
inet_interfaces = loopback-only
inet_protocols = all
mynetworks = 127.0.0.0/8 [::1]/128
alias_maps =
alias_database =
local_recipient_maps =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
default_transport = error:test harness does not deliver mail
local_transport = error:test harness does not deliver mail
maillog_file_prefixes = {self.root}
maillog_file = {self.root}/maillog
smtpd_tls_chain_files = {", ".join(str(f) for f in self.chain_files)}
smtpd_tls_security_level = may
smtp_dns_support_level = dnssec
dnssec_probe = ns:{self.hostname.split(".", 1)[1]}
smtp_tls_security_level = dane
smtp_tls_loglevel = 1
""")
        (self.conf / "master.cf").write_text(
            f"127.0.0.1:{self.port} inet n - n - {self.smtpd_maxproc} smtpd {self.smtpd_options}\n"
            f"[::1]:{self.port} inet n - n - {self.smtpd_maxproc} smtpd {self.smtpd_options}\n"
            + (f"127.0.0.1:{self.wrapper_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes "
               "-o smtpd_tls_security_level=encrypt\n" if self.wrapper_port else "")
            + "".join(f"{name} unix {flags}\n" for name, flags in [
                ("pickup", "n - n 60 1 pickup"), ("cleanup", "n - n - 0 cleanup"), ("qmgr", "n - n 300 1 qmgr"),
                ("tlsmgr", "- - n 1000? 1 tlsmgr"), ("rewrite", "- - n - - trivial-rewrite"),
                ("bounce", "- - n - 0 bounce"), ("defer", "- - n - 0 bounce"), ("trace", "- - n - 0 bounce"),
                ("verify", "- - n - 1 verify"), ("flush", "n - n 1000? 0 flush"), ("proxymap", "- - n - - proxymap"),
                ("smtp", "- - n - - smtp"), ("relay", "- - n - - smtp"), ("showq", "n - n - - showq"),
                ("error", "- - n - - error"), ("retry", "- - n - - error"), ("discard", "- - n - - discard"),
                ("anvil", "- - n - 1 anvil"), ("scache", "- - n - 1 scache")])
            + "postlog unix-dgram n - n - 1 postlogd\n")
        result = subprocess.run(["postfix", "-c", str(self.conf), "start"], capture_output=True, text=True)
        if result.returncode != 0:
            check = subprocess.run(["script", "-qc", f"postfix -c {self.conf} check", "/dev/null"],
                                   capture_output=True, text=True)
            raise RuntimeError(f"postfix did not start: {result.stderr} {check.stdout}")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"220"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("postfix smtpd did not answer")

    @property
    def reload(self) -> list[str]:
        return ["postfix", "-c", str(self.conf), "reload"]

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True)
        pid_file = self.root / "spool" / "pid" / "master.pid"
        if pid_file.exists():
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, signal.SIGTERM)
            except (ValueError, OSError):
                pass


def posttls_finger(postfix: Postfix, unbound: Unbound, algorithm: str) -> str:
    """Postfix's own DANE verifier through the validating resolver (private resolv.conf)."""
    extra = "-p '<=TLSv1.2' -o 'tls_medium_cipherlist=aRSA:!aNULL'" if algorithm == "rsa" else \
        "-p '<=TLSv1.2' -o 'tls_medium_cipherlist=aECDSA:!aNULL'"
    inner = (f"mount --bind {unbound.root / 'resolv.conf'} /etc/resolv.conf && "
             f"MAIL_CONFIG={postfix.conf} exec posttls-finger -c -l dane {extra} "
             f"'[{postfix.hostname}]:{postfix.port}'")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", inner],
                            capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def start_resolver_and_mta(root: Path, bind: Bind, host: str, chain_files: list[Path]) -> tuple[Unbound, Postfix]:
    """Unbound validating the test zone and Postfix serving ``chain_files`` as ``host``."""
    unbound = Unbound(root / "unbound", bind)
    postfix = Postfix(root / "postfix", host, chain_files)
    try:
        unbound.start()
        postfix.start()
    except Exception:
        postfix.stop()
        unbound.stop()
        raise
    return unbound, postfix


def stop_resolver_and_mta(root: Path, unbound: Unbound, postfix: Postfix) -> None:
    """Stop what :func:`start_resolver_and_mta` started (by pid) and remove ``root``."""
    try:
        postfix.stop()
    finally:
        unbound.stop()
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- PowerDNS


@dataclass
class PowerDns:
    """PowerDNS Authoritative (gsqlite3) with its HTTP API on loopback, the zone DNSSEC-signed
    by ``pdnsutil secure-zone``; SOA-EDIT-API DEFAULT and API-RECTIFY on, as a zone created
    through the API gets them.  Caches are off so every read sees the database."""

    root: Path
    zone: str = ZONE
    api_key: str = field(default_factory=lambda: os.urandom(16).hex())
    port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def key_file(self) -> Path:
        return self.root / "api.key"

    def pdnsutil(self, *args: str) -> str:
        return run("pdnsutil", f"--config-dir={self.root}", *args)

    def start(self) -> PowerDns:
        require("pdns_server", "pdnsutil")
        import sqlite3

        schema = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
        if not schema.exists():
            message = f"SERVER TEST NOT RUN: {schema} missing (install pdns-backend-sqlite3)"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        self.root.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(self.root / "pdns.sqlite3") as db:
            db.executescript(schema.read_text())
        self.key_file.write_text(self.api_key + "\n")
        os.chmod(self.key_file, 0o600)
        (self.root / "pdns.conf").write_text(f"""launch=gsqlite3
gsqlite3-database={self.root}/pdns.sqlite3
gsqlite3-dnssec=yes
local-address=127.0.0.1
local-port={self.port}
api=yes
api-key={self.api_key}
webserver=yes
webserver-address=127.0.0.1
webserver-port={self.api_port}
webserver-allow-from=127.0.0.1/32
socket-dir={self.root}
guardian=no
daemon=no
disable-syslog=yes
loglevel=4
cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0
consistent-backends=yes
""")
        (self.root / "zone.db").write_text(ZONE_TEMPLATE.format(zone=self.zone).replace("( 1 ", "( 2026010101 "))
        self.pdnsutil("load-zone", self.zone, str(self.root / "zone.db"))
        self.pdnsutil("set-meta", self.zone, "SOA-EDIT-API", "DEFAULT")
        self.pdnsutil("set-meta", self.zone, "API-RECTIFY", "1")
        self.pdnsutil("secure-zone", self.zone)
        self.pdnsutil("rectify-zone", self.zone)
        log = (self.root / "pdns.log").open("wb")
        self.process = subprocess.Popen(["pdns_server", f"--config-dir={self.root}"], stdout=log, stderr=log)
        log.close()
        self._wait_signed()
        return self

    def _wait_signed(self, timeout: float = 20.0) -> None:
        import requests

        deadline = time.monotonic() + timeout
        zone = dns.name.from_text(self.zone)
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"pdns_server exited: {(self.root / 'pdns.log').read_text()[-2000:]}")
            try:
                q = dns.message.make_query(zone, dns.rdatatype.SOA, want_dnssec=True)
                r = dns.query.udp(q, "127.0.0.1", port=self.port, timeout=1)
                api = requests.get(f"{self.api_url}/api/v1/servers/localhost", timeout=1,
                                   headers={"X-API-Key": self.api_key})
                if any(rr.rdtype == dns.rdatatype.RRSIG for rr in r.answer) and api.status_code == 200:
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"pdns_server did not serve a signed {self.zone} in {timeout}s")

    def api(self, method: str, path: str, body: object = None) -> object:
        """Another writer: the same HTTP API, used with plain requests."""
        import requests

        response = requests.request(method, f"{self.api_url}/api/v1/servers/localhost{path}", json=body,
                                    headers={"X-API-Key": self.api_key}, timeout=10)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code} {response.text}")
        return response.json() if response.content else None

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
        self.process = None
