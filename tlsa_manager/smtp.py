"""STARTTLS probe: which certificate an SMTP server presents, per key algorithm.

A server may hold an RSA and an ECDSA chain at once (Postfix ``smtpd_tls_chain_files``);
which one a client gets depends on what it offers.  The probe asks twice, offering
only ECDSA and then only RSA (TLS 1.2 cipher suites pin the certificate type), with
SNI = the MX host name, and returns the leaf each time.  No verification happens
here: the point is to see what is served, before and after a deploy.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from cryptography import x509

from tlsa_manager.errors import NetworkError

_CIPHERS = {
    "ecdsa": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305",
    "rsa": "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305",
}


@dataclass(frozen=True)
class Presented:
    """What one handshake showed: the chain as sent (leaf first), or why there was none."""

    algorithm: str
    leaf: x509.Certificate | None
    error: str | None = None
    chain: tuple[x509.Certificate, ...] = ()
    starttls: bool = True


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


def _line(sock: socket.socket, buffer: bytearray) -> str:
    while b"\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise NetworkError("the server closed the connection", "check that it speaks SMTP")
        buffer.extend(chunk)
    index = buffer.index(b"\n")
    line = bytes(buffer[: index + 1]).decode("ascii", "replace").rstrip("\r\n")
    del buffer[: index + 1]
    return line


def _reply(sock: socket.socket, buffer: bytearray) -> tuple[int, list[str]]:
    lines = []
    while True:
        line = _line(sock, buffer)
        if len(line) < 3 or not line[:3].isdigit():
            raise NetworkError(f"not an SMTP reply: {line[:60]!r}", "is this an SMTP port?")
        lines.append(line[4:])
        if len(line) == 3 or line[3] == " ":
            return int(line[:3]), lines


def starttls(host: str, port: int, server_name: str, algorithm: str, timeout: float = 10.0) -> Presented:
    """Connect, EHLO, STARTTLS, handshake offering only ``algorithm``; return the leaf."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_CIPHERS[algorithm])
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            buffer = bytearray()
            code, _ = _reply(sock, buffer)
            if code != 220:
                return Presented(algorithm, None, f"greeting {code}")
            sock.sendall(b"EHLO tlsa-manager.invalid\r\n")
            code, lines = _reply(sock, buffer)
            if code != 250 or not any(x.upper().startswith("STARTTLS") for x in lines):
                return Presented(algorithm, None, "STARTTLS not offered", starttls=False)
            sock.sendall(b"STARTTLS\r\n")
            code, _ = _reply(sock, buffer)
            if code != 220:
                return Presented(algorithm, None, f"STARTTLS refused ({code})")
            with context.wrap_socket(sock, server_hostname=server_name) as tls:
                chain = _sent_chain(tls)
                return Presented(algorithm, chain[0] if chain else None, None, chain)
    except ssl.SSLError as exc:
        return Presented(algorithm, None, f"TLS handshake failed ({exc.reason or exc})")
    except (OSError, NetworkError) as exc:
        return Presented(algorithm, None, str(exc))


def probe(host: str, port: int, server_name: str, timeout: float = 10.0) -> dict[str, Presented]:
    """The leaf presented for each algorithm (``error`` set where none was)."""
    return {alg: starttls(host, port, server_name, alg, timeout) for alg in ("ecdsa", "rsa")}
