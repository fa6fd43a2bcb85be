"""The least a first sync can do, as a lower bound for issue 14's "within 2x of the floor".

Reads the same fleet config as ``tlsa-manager --config C sync``, and for each host only:
loads the PEM file (key, leaf, chain), checks the key belongs to the leaf, computes
"3 1 1" of the leaf and "2 1 1" of its issuer plus two catalog issuers (four records a
host, as the floor's script), then sends them in UPDATEs of the provider's size with
TSIG and waits until the secondary serves the primary's serial.

It does none of what makes the tool safe: no read of what is published, no DNSSEC
observation of either server, no ledger, no planner (pre-publication, removal rules),
no check of what was served after the write.  Its time, beside the floor's and the
tool's in the same run (bench/bench_minimal.py), says how much of the gap is Python
itself (start-up, config, certificate parsing, message building) rather than our work.

Usage: python bench/minimal_sync.py CONFIG PRIMARY_PORT SECONDARY_PORT TSIG_KEY_FILE ZONE
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
import tomllib
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.tsigkeyring
import dns.update
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from dns.rdtypes.ANY.TLSA import TLSA

CATALOG = Path(__file__).resolve().parent.parent / "tlsa_manager" / "data" / "letsencrypt" / "manifest.json"
IN, TLSA_TYPE = dns.rdataclass.IN, dns.rdatatype.TLSA
SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
PEM = re.compile(rb"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----\n?", re.S)
PER_MESSAGE = 150  # hosts per UPDATE: about the provider's split (4 records an owner)


def records(path: Path, catalog: list[bytes]) -> list[TLSA]:
    """The host's four records (leaf, issuer, two other catalog issuers), after checking
    its key matches its leaf."""
    pems = PEM.findall(path.read_bytes())
    key = next(p for p in pems if b"PRIVATE KEY" in p)
    certs = [x509.load_pem_x509_certificate(p) for p in pems if b"CERTIFICATE" in p]
    leaf_spki = certs[0].public_key().public_bytes(*SPKI)
    if load_pem_private_key(key, None).public_key().public_bytes(*SPKI) != leaf_spki:
        raise SystemExit(f"{path}: the key does not match the certificate")
    issuer = hashlib.sha256(certs[1].public_key().public_bytes(*SPKI)).digest()
    return [
        TLSA(IN, TLSA_TYPE, 3, 1, 1, hashlib.sha256(leaf_spki).digest()),  # type: ignore[no-untyped-call]
        TLSA(IN, TLSA_TYPE, 2, 1, 1, issuer),  # type: ignore[no-untyped-call]
        *(TLSA(IN, TLSA_TYPE, 2, 1, 1, digest) for digest in [d for d in catalog if d != issuer][:2]),  # type: ignore[no-untyped-call]
    ]


def serial(port: int, zone: str) -> int:
    answer = dns.query.tcp(dns.message.make_query(zone, dns.rdatatype.SOA), "127.0.0.1", port=port, timeout=5)
    return int(next(iter(answer.answer[0])).serial)


def main() -> None:
    config, primary, secondary, key_file, zone = sys.argv[1:6]
    found = re.search(r'key "?([^"\s]+)"? \{.*secret "([^"]+)"', Path(key_file).read_text(), re.S)
    if found is None:
        raise SystemExit(f"{key_file}: no TSIG key")
    key_name, secret = found.groups()
    hosts = tomllib.loads(Path(config).read_text())["hosts"]
    manifest = json.loads(CATALOG.read_text())
    issuers = [e for e in manifest if e.get("status") in {"active", "backup"}]
    catalog = list(dict.fromkeys(bytes.fromhex(e["spki_sha256"]) for e in issuers))
    keyring = dns.tsigkeyring.from_text({key_name: ("hmac-sha256", secret)})
    owners = [
        (dns.name.from_text(f"_25._tcp.{name}."), records(Path(spec["cert"]), catalog))
        for name, spec in hosts.items()
    ]
    for start in range(0, len(owners), PER_MESSAGE):
        update = dns.update.UpdateMessage(zone, keyring=keyring)
        for owner, rdatas in owners[start : start + PER_MESSAGE]:
            update.add(owner, 60, *rdatas)
        reply = dns.query.tcp(update, "127.0.0.1", port=int(primary), timeout=60)
        if reply.rcode() != 0:
            raise SystemExit(f"UPDATE refused: rcode {reply.rcode()}")
    target = serial(int(primary), zone)
    while serial(int(secondary), zone) < target:
        time.sleep(0.01)


if __name__ == "__main__":
    main()
