"""Refresh the issuer catalog from Let's Encrypt's "Chains of Trust" page.

The page lists CAs under "Active", "Backup" and "Retired" items, each with links to
its PEM files.  Every downloaded certificate must chain, by signature, to one of the
ISRG roots bundled in this package before it is accepted: the page is fetched over
the network and nothing from it is trusted on its word.  The result is written to
``<state_dir>/catalog`` in the bundled layout (PEMs + manifest.json), atomically.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tlsa_manager.catalog import MANIFEST, Catalog, bundled_roots, load_directory, refreshed_dir
from tlsa_manager.certs import is_self_signed, issued_by, key_type, subject_text
from tlsa_manager.errors import NetworkError
from tlsa_manager.fsutil import check_trusted_dir, fsync_dir
from tlsa_manager.records import spki_sha256

log = logging.getLogger(__name__)

DEFAULT_URL = "https://letsencrypt.org/certificates/"
#: the most one fetch may bring: the page is ~100 KiB, a PEM ~2 KiB
FETCH_LIMIT = 4 * 2**20
_STATUS_WORDS = {"active": "active", "backup": "backup", "retired": "retired"}


@dataclass
class PageLink:
    """A PEM link on the page and the status heading it stood under."""

    url: str
    status: str
    section: str


class _CertificatesPage(HTMLParser):
    """Collect .pem links with the nearest preceding status word and section heading."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.section = ""
        self.status = "active"
        self.in_heading = False
        self.links: list[PageLink] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"h1", "h2", "h3"}:
            self.in_heading = True
        if tag == "a":
            href = dict(attrs).get("href") or ""
            if href.lower().endswith(".pem"):
                status = "root" if "root" in self.section.lower() else self.status
                self.links.append(PageLink(urljoin(self.base, href), status, self.section))

    def handle_endtag(self, tag: str) -> None:
        if tag in {"h1", "h2", "h3"}:
            self.in_heading = False

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if not text:
            return
        if self.in_heading:
            self.section = text
            self.status = "active"
            return
        first = re.split(r"[\s,:(]", text, maxsplit=1)[0].lower()
        if first in _STATUS_WORDS and len(text) < 60:
            self.status = _STATUS_WORDS[first]


def parse_page(html: str, base: str) -> list[PageLink]:
    parser = _CertificatesPage(base)
    parser.feed(html)
    return parser.links


@dataclass
class UpdateResult:
    catalog: Catalog
    accepted: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


Fetch = Callable[[str], bytes]


def requests_fetch(timeout: float) -> Fetch:
    """A fetcher using ``requests`` (imported here: only `catalog update` needs it)."""
    import requests

    session = requests.Session()

    def fetch(url: str) -> bytes:
        deadline = time.monotonic() + timeout
        body = bytearray()
        try:
            with session.get(url, timeout=timeout, stream=True) as response:
                response.raise_for_status()
                for chunk in response.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > FETCH_LIMIT:
                        raise NetworkError(f"{url} sent more than {FETCH_LIMIT // 2**20} MiB")
                    if time.monotonic() > deadline:
                        raise NetworkError(f"{url} did not finish within {timeout:g} s")
        except requests.RequestException as exc:
            raise NetworkError(f"could not fetch {url} ({type(exc).__name__})") from None
        return bytes(body)

    return fetch


def _chains_to_root(
    cert: x509.Certificate, pool: list[x509.Certificate], roots: tuple[x509.Certificate, ...]
) -> bool:
    """True when signatures lead from ``cert`` to a bundled root (depth-limited)."""
    frontier = [cert]
    for _ in range(6):
        nxt: list[x509.Certificate] = []
        for current in frontier:
            if any(issued_by(current, root) for root in roots):
                return True
            nxt += [c for c in pool if c is not current and issued_by(current, c)]
        frontier = nxt
        if not frontier:
            return False
    return False


def update(
    state_dir: Path, url: str = DEFAULT_URL, fetch: Fetch | None = None, timeout: float = 20.0
) -> UpdateResult:
    """Fetch, verify and store the catalog; raise NetworkError if the page is unreachable."""
    fetch = fetch or requests_fetch(timeout)
    html = fetch(url).decode("utf-8", "replace")
    links = parse_page(html, url)
    if not links:
        raise NetworkError(
            f"{url} lists no PEM certificates (the page layout may have changed)",
            "keep using the bundled catalog and report this",
        )
    roots = bundled_roots()
    downloaded: list[tuple[PageLink, x509.Certificate, bytes]] = []
    rejected: list[str] = []
    for link in links:
        try:
            pem = fetch(link.url)
            cert = x509.load_pem_x509_certificate(pem)
        except NetworkError as exc:
            if link.status in ("active", "backup"):
                # without it, the next sync would take down the pre-published "2 1 1" of
                # a CA that may issue the next certificate: keep the catalog in use
                raise NetworkError(
                    f"{exc.message}, a CA listed as {link.status}; nothing was written",
                    "run catalog update again later",
                ) from None
            rejected.append(f"{link.url}: download failed")
            continue
        except ValueError:
            rejected.append(f"{link.url}: not a PEM certificate")
            continue
        downloaded.append((link, cert, cert.public_bytes(serialization.Encoding.PEM)))
    pool = [c for _, c, _ in downloaded]
    root_ders = {r.public_bytes(serialization.Encoding.DER) for r in roots}
    entries: list[dict[str, object]] = []
    files: dict[str, bytes] = {}
    for link, cert, pem in downloaded:
        der = cert.public_bytes(serialization.Encoding.DER)
        if is_self_signed(cert) and der not in root_ders:
            rejected.append(f"{link.url}: self-signed root {subject_text(cert)!r} is not bundled")
            continue
        if der not in root_ders and not _chains_to_root(cert, pool, roots):
            rejected.append(f"{link.url}: does not chain to a bundled ISRG root")
            continue
        name = Path(link.url).name
        if name in files:
            continue
        key = cert.public_key()
        entries.append(
            {
                "name": name.removesuffix(".pem"),
                "ca": subject_text(cert),
                "variant": f"issued by {cert.issuer.rfc4514_string()}",
                "file": name,
                "key_type": key_type(key),
                "status": "root" if is_self_signed(cert) else link.status,
                "status_detail": f"from {url}, section {link.section!r}",
                "spki_sha256": spki_sha256(key),
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(),
            }
        )
        files[name] = pem
    if not entries:
        raise NetworkError(f"no certificate from {url} passed verification", "keep using the bundled catalog")
    target = refreshed_dir(state_dir)
    _write_directory(target, entries, files)
    catalog = load_directory(target, origin=f"refreshed ({target})")
    return UpdateResult(catalog, [str(e["name"]) for e in entries], rejected)


def _write_directory(target: Path, entries: list[dict[str, object]], files: dict[str, bytes]) -> None:
    """Write a complete catalog folder next to the old one, then swap it in."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_trusted_dir(target.parent)  # the state directory: nobody else may swap our files
    staging = Path(tempfile.mkdtemp(prefix=".catalog.", dir=target.parent))
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        (staging / MANIFEST).write_text(json.dumps(entries, indent=2) + "\n")
        for item in staging.iterdir():
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
        old = target.with_name(".catalog.old")
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        fsync_dir(target.parent)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
