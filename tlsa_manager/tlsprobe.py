"""TLS probe: which certificate a server presents, per key algorithm and protocol.

A server may hold an RSA and an ECDSA chain at once (Postfix ``smtpd_tls_chain_files``,
Dovecot ``ssl_alt_cert``); which one a client gets depends on what it offers.  The
probe asks twice, offering only ECDSA and then only RSA (TLS 1.2 cipher suites pin
the certificate type), with SNI = the host name, and returns the chain each time.

A TLSA record protects any TLS service, so the handshake is preceded by the
protocol's own upgrade: SMTP ``STARTTLS`` (25, 587), IMAP ``STARTTLS`` (143), POP3
``STLS`` (110), or nothing for implicit TLS (465, 993, 995, 443).  One small function
per protocol speaks just enough of it to reach the handshake.  No verification
happens here: the point is to see what is served, before and after a deploy.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from tlsa_manager.errors import NetworkError, UsageError

_CIPHERS = {
    "ecdsa": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305",
    "rsa": "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305",
}

#: protocol names accepted by ``--protocol``; "tls" is implicit TLS (no upgrade command)
PROTOCOLS = ("smtp", "imap", "pop3", "tls")
#: the protocol a well-known port speaks; any other port is taken to be SMTP (MX checks
#: on a test port, a submission port moved elsewhere) unless ``--protocol`` says otherwise
PORT_PROTOCOLS = {
    25: "smtp",
    587: "smtp",
    143: "imap",
    110: "pop3",
    465: "tls",
    993: "tls",
    995: "tls",
    443: "tls",
}
#: the most a server may send before the TLS handshake (a greeting, EHLO, CAPABILITY
#: replies are a few KiB): a server that streams reply lines forever is cut off there
MAX_DIALOGUE = 1 << 20
#: what the upgrade is called, for messages
UPGRADE_NAMES = {"smtp": "STARTTLS", "imap": "STARTTLS", "pop3": "STLS", "tls": "TLS"}


def protocol_for(port: int, override: str | None = None) -> str:
    """The protocol to speak on ``port``: the override, else by well-known port, else SMTP."""
    if override is not None:
        if override not in PROTOCOLS:
            raise UsageError(f"unknown protocol {override!r}", f"use one of {', '.join(PROTOCOLS)}")
        return override
    return PORT_PROTOCOLS.get(port, "smtp")


@dataclass(frozen=True)
class Presented:
    """What one handshake showed: the chain as sent (leaf first), or why there was none.

    ``starttls`` is False when the server did not offer the protocol's TLS upgrade
    (an SMTP server without STARTTLS, an IMAP server without STARTTLS, ...).
    """

    algorithm: str
    leaf: x509.Certificate | None
    error: str | None = None
    chain: tuple[x509.Certificate, ...] = ()
    starttls: bool = True


class _NoUpgrade(Exception):
    """The server does not offer the protocol's TLS upgrade."""


class _Refused(Exception):
    """The server answered the greeting or the upgrade command with an error."""


def _sent_chain(tls: ssl.SSLSocket) -> tuple[x509.Certificate, ...]:
    """The certificates the server sent, in order (public API from Python 3.13 on)."""
    getter = getattr(tls, "get_unverified_chain", None) or getattr(
        getattr(tls, "_sslobj", None), "get_unverified_chain", None
    )
    if getter is None:
        der = tls.getpeercert(binary_form=True)
        return (x509.load_der_x509_certificate(der),) if der else ()
    out = []
    for cert in getter() or []:
        der = cert if isinstance(cert, bytes) else cert.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
        out.append(x509.load_der_x509_certificate(der))
    return tuple(out)


class _Lines:
    """Line reader over a plain socket (the upgrade dialogues are line based)."""

    def __init__(self, sock: socket.socket, protocol: str, deadline: float = float("inf")) -> None:
        self.sock = sock
        self.protocol = protocol
        self.buffer = bytearray()
        self.seen = False  # anything received at all
        self.deadline = deadline  # time.monotonic(): the whole dialogue ends by then
        self.received = 0

    def line(self) -> str:
        while b"\n" not in self.buffer:
            remaining = self.deadline - time.monotonic()  # a server dripping bytes never trips
            if remaining <= 0:  # a per-read timeout: the whole dialogue has its deadline
                raise self._late() if self.seen else TimeoutError("timed out")
            if remaining < (self.sock.gettimeout() or remaining):
                self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(4096)
            except TimeoutError:
                if not self.seen:
                    raise
                raise self._late() from None
            self.seen = self.seen or bool(chunk)
            if not chunk:
                raise NetworkError(
                    "the server closed the connection", f"check that it speaks {self.protocol.upper()}"
                )
            self.buffer.extend(chunk)
            self.received += len(chunk)
            if len(self.buffer) > 65536:
                raise NetworkError("the server sent an endless line", f"is this a {self.protocol} port?")
            if self.received > MAX_DIALOGUE:
                raise NetworkError("the server sent an endless reply", f"is this a {self.protocol} port?")
        index = self.buffer.index(b"\n")
        text = bytes(self.buffer[: index + 1]).decode("ascii", "replace").rstrip("\r\n")
        del self.buffer[: index + 1]
        return text

    def _late(self) -> NetworkError:
        return NetworkError("the server's reply did not end in time", f"is this a {self.protocol} port?")

    def send(self, command: str) -> None:
        self.sock.sendall(command.encode("ascii") + b"\r\n")


def _smtp_reply(lines: _Lines) -> tuple[int, list[str]]:
    texts = []
    while True:
        line = lines.line()
        if len(line) < 3 or not line[:3].isdigit():
            raise NetworkError(f"not an SMTP reply: {line[:60]!r}", "is this an SMTP port?")
        texts.append(line[4:])
        if len(line) == 3 or line[3] == " ":
            return int(line[:3]), texts


def _smtp(lines: _Lines) -> None:
    """RFC 3207: greeting 220, EHLO lists STARTTLS, STARTTLS answered 220."""
    code, _ = _smtp_reply(lines)
    if code != 220:
        raise _Refused(f"greeting {code}")
    lines.send("EHLO tlsa-manager.invalid")
    code, texts = _smtp_reply(lines)
    if code != 250 or not any(x.upper().startswith("STARTTLS") for x in texts):
        raise _NoUpgrade
    lines.send("STARTTLS")
    code, _ = _smtp_reply(lines)
    if code != 220:
        raise _Refused(f"STARTTLS refused ({code})")


def _imap_tagged(lines: _Lines, tag: str) -> tuple[str, list[str]]:
    """Untagged lines up to the tagged completion; returns (OK|NO|BAD, untagged)."""
    untagged: list[str] = []
    while True:
        line = lines.line()
        if line.startswith(tag + " "):
            return line[len(tag) + 1 :].split(" ", 1)[0].upper(), untagged
        if not line.startswith("* "):
            raise NetworkError(f"not an IMAP reply: {line[:60]!r}", "is this an IMAP port?")
        untagged.append(line[2:])


def _imap(lines: _Lines) -> None:
    """RFC 3501 §6.2.1: greeting ``* OK``, CAPABILITY lists STARTTLS, ``STARTTLS`` answered OK."""
    greeting = lines.line()
    if not greeting.upper().startswith("* OK"):
        if greeting.startswith("* "):
            raise _Refused(f"greeting {greeting[2:40]!r}")
        raise NetworkError(f"not an IMAP greeting: {greeting[:60]!r}", "is this an IMAP port?")
    lines.send("t1 CAPABILITY")
    status, untagged = _imap_tagged(lines, "t1")
    words = {w.upper() for line in untagged if line.upper().startswith("CAPABILITY") for w in line.split()}
    if status != "OK" or "STARTTLS" not in words:
        raise _NoUpgrade
    lines.send("t2 STARTTLS")
    status, _ = _imap_tagged(lines, "t2")
    if status != "OK":
        raise _Refused(f"STARTTLS refused ({status})")


def _pop3(lines: _Lines) -> None:
    """RFC 2595 §4: greeting ``+OK``, CAPA lists STLS, ``STLS`` answered ``+OK``."""
    greeting = lines.line()
    if not greeting.startswith("+OK"):
        if greeting.startswith("-ERR"):
            raise _Refused(f"greeting {greeting[:40]!r}")
        raise NetworkError(f"not a POP3 greeting: {greeting[:60]!r}", "is this a POP3 port?")
    lines.send("CAPA")
    if not lines.line().startswith("+OK"):
        raise _NoUpgrade
    capabilities = []
    while (line := lines.line()) != ".":
        capabilities.append(line.split(" ", 1)[0].upper())
    if "STLS" not in capabilities:
        raise _NoUpgrade
    lines.send("STLS")
    answer = lines.line()
    if not answer.startswith("+OK"):
        raise _Refused(f"STLS refused ({answer[:40]!r})")


def _implicit(lines: _Lines) -> None:
    """Implicit TLS (465, 993, 995, 443): the handshake is the first thing said."""


_UPGRADES: dict[str, Callable[[_Lines], None]] = {
    "smtp": _smtp,
    "imap": _imap,
    "pop3": _pop3,
    "tls": _implicit,
}


def handshake(
    host: str, port: int, server_name: str, algorithm: str, protocol: str = "smtp", timeout: float = 10.0
) -> Presented:
    """Connect, upgrade as ``protocol`` does, handshake offering only ``algorithm``; return the chain."""
    upgrade = _UPGRADES[protocol]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_CIPHERS[algorithm])
    deadline = time.monotonic() + timeout  # the whole connection, as --timeout promises
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            lines = _Lines(sock, protocol, deadline)
            try:
                upgrade(lines)
            except TimeoutError:
                if protocol == "tls" or lines.seen:
                    raise
                # silence before a greeting: the server waits for a TLS ClientHello
                return Presented(
                    algorithm,
                    None,
                    f"no {protocol.upper()} greeting within {timeout:g} s (implicit TLS? try --protocol tls)",
                )
            except _NoUpgrade:
                return Presented(algorithm, None, f"{UPGRADE_NAMES[protocol]} not offered", starttls=False)
            except _Refused as exc:
                return Presented(algorithm, None, str(exc))
            # What is left of the deadline bounds the whole handshake: CPython's handshake
            # keeps one deadline across all its reads (a server that drips its bytes
            # cannot outlast it).
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                tls = context.wrap_socket(sock, server_hostname=server_name)
            except TimeoutError:
                return Presented(algorithm, None, f"no complete TLS handshake within {timeout:g} s")
            with tls:
                chain = _sent_chain(tls)
                return Presented(algorithm, chain[0] if chain else None, None, chain)
    except ssl.SSLError as exc:
        return Presented(algorithm, None, f"TLS handshake failed ({exc.reason or exc})")
    except (OSError, NetworkError) as exc:
        return Presented(algorithm, None, str(exc))


def probe(
    host: str, port: int, server_name: str, protocol: str = "smtp", timeout: float = 10.0
) -> dict[str, Presented]:
    """The chain presented for each algorithm (``error`` set where none was)."""
    return {alg: handshake(host, port, server_name, alg, protocol, timeout) for alg in ("ecdsa", "rsa")}
