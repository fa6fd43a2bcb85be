"""`catalog update` against a local copy of the certificates page: verify, store, fall back."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import pki
from conftest import LE_DATA, CliRunner


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the fake catalog site without logging every request into the test output."""

    def log_message(self, format: str, *args: object) -> None:
        pass

PAGE = """<html><body>
<h1>Root Certificates</h1>
<ul><li>Active<ul>
  <li>ISRG Root X1 <a href="/certs/isrg-root-x1.pem">pem</a></li>
  <li>ISRG Root X2 <a href="/certs/isrg-root-x2.pem">pem</a>
      <a href="/certs/isrg-root-x2-cross-x1.pem">pem</a></li>
  <li>Fake Root <a href="/certs/fake-root.pem">pem</a></li>
</ul></li></ul>
<h1>Subordinate (Intermediate) CAs</h1>
<ul>
<li>Active<ul>
  <li>YR1 <a href="/certs/gen-y/int-yr1.pem">pem</a></li>
  <li>YR2 <a href="/certs/gen-y/int-yr2.pem">pem</a></li>
  <li>YR3 <a href="/certs/gen-y/int-yr3.pem">pem</a></li>
  <li>Evil <a href="/certs/gen-y/evil.pem">pem</a></li>
</ul></li>
<li>Backup<ul>
  <li>YE3 <a href="/certs/gen-y/int-ye3.pem">pem</a></li>
</ul></li>
<li>Retired<ul>
  <li>R10 <a href="/certs/2024/r10.pem">pem</a></li>
  <li>Gone <a href="/certs/2024/missing.pem">pem</a></li>
</ul></li>
</ul></body></html>
"""


@pytest.fixture
def le_site(tmp_path: Path) -> Iterator[str]:
    site = tmp_path / "site"
    (site / "certificates").mkdir(parents=True)
    (site / "certificates" / "index.html").write_text(PAGE)
    files = {
        "certs/isrg-root-x1.pem": "isrg-root-x1.pem",
        "certs/isrg-root-x2.pem": "isrg-root-x2.pem",
        "certs/isrg-root-x2-cross-x1.pem": "isrg-root-x2-cross-x1.pem",
        "certs/gen-y/int-yr1.pem": "yr1.pem",
        "certs/gen-y/int-yr2.pem": "yr2.pem",
        "certs/gen-y/int-yr3.pem": "yr3.pem",
        "certs/gen-y/int-ye3.pem": "ye3.pem",
        "certs/2024/r10.pem": "r10.pem",
    }
    for target, source in files.items():
        pki.write(site / target, (LE_DATA / source).read_bytes())
    # YR1's chain on this page also needs Root YR (cross-signed by X1) to reach X1.
    pki.write(site / "certs" / "gen-y" / "root-yr.pem", (LE_DATA / "isrg-root-yr-cross-x1.pem").read_bytes())
    page = (site / "certificates" / "index.html").read_text()
    page = page.replace("</body>", '<a href="/certs/gen-y/root-yr.pem">Root YR</a></body>')
    page = page.replace("<h1>Subordinate", '<ul><li>Active <a href="/certs/gen-y/root-ye.pem">x</a></li></ul><h1>Subordinate')
    pki.write(site / "certs" / "gen-y" / "root-ye.pem", (LE_DATA / "isrg-root-ye-cross-x2.pem").read_bytes())
    (site / "certificates" / "index.html").write_text(page)
    fake_root = pki.make_ca("ISRG Root X1")  # same name as the real root, different key
    evil = pki.make_ca("YR9", issuer=fake_root)
    pki.write(site / "certs" / "fake-root.pem", fake_root.pem)
    pki.write(site / "certs" / "gen-y" / "evil.pem", evil.pem)
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/certificates/"
    server.shutdown()
    server.server_close()


def test_update_verifies_and_takes_statuses_from_the_page(cli: CliRunner, le_site: str) -> None:
    result = cli("catalog", "update", "--url", le_site)
    assert result.code == 0, result.err
    assert "rejected" in result.out
    assert "fake-root.pem: self-signed root" in result.err
    assert "evil.pem: does not chain to a bundled ISRG root" in result.err
    assert "missing.pem: download failed" in result.err
    doc = cli("--json", "catalog", "list").json()
    assert doc["origin"].startswith("refreshed")
    status = {i["name"]: i["status"] for i in doc["issuers"]}
    assert status["YR3"] == "active"  # the page moved it: data, not code
    assert status["YE3"] == "backup"
    assert status["R10"] == "retired"
    assert "YR9" not in status
    assert status["ISRG Root X1"] == "root"


def test_offline_falls_back_to_bundled(cli: CliRunner) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = cli("catalog", "update", "--url", f"http://127.0.0.1:{port}/certificates/", "--timeout", "2")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "catalog update failed" in result.err and "still using the bundled catalog" in result.err
    assert cli("--json", "catalog", "list").json()["origin"] == "bundled"


def test_page_without_certificates_keeps_old_catalog(cli: CliRunner, tmp_path: Path) -> None:
    site = tmp_path / "empty"
    site.mkdir()
    (site / "index.html").write_text("<html><h1>Maintenance</h1></html>")
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = cli("catalog", "update", "--url", f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
    assert result.code == 1 and "lists no PEM certificates" in result.err


def test_stale_catalog_is_noticed_and_update_says_what_changed(cli: CliRunner, le_site: str, tmp_path: Path) -> None:
    """A Let's Encrypt chain from a CA the catalog lacks is H26 naming `catalog update`;
    the update reports the CA it added, and the hazard is gone."""
    from cryptography import x509

    index = tmp_path / "site" / "certificates" / "index.html"
    full = index.read_text()
    index.write_text(full.replace('<li>YR3 <a href="/certs/gen-y/int-yr3.pem">pem</a></li>', ""))
    first = cli("catalog", "update", "--url", le_site)
    assert first.code == 0 and "removed YR3 (backup)" in first.out, first.out
    yr3 = x509.load_pem_x509_certificate((LE_DATA / "yr3.pem").read_bytes())
    # a leaf naming YR3 as its issuer, served with YR3's certificate (as Let's Encrypt would)
    leaf = pki.make_leaf(["mail.example.test"], pki.Issued(yr3, pki.make_key("rsa2048")))
    chain = pki.write(tmp_path / "fullchain.pem", leaf.pem, (LE_DATA / "yr3.pem").read_bytes())
    key = pki.write(tmp_path / "privkey.pem", leaf.key_pem)
    zone = tmp_path / "db.example.test"
    zone.write_text("$ORIGIN example.test.\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n"
                    "  IN NS ns1\nns1 IN A 192.0.2.1\nmail IN A 192.0.2.25\n")
    plan = ["--json", "plan", "mail.example.test", "--cert", str(chain), "--key", str(key), "--zone-file", str(zone)]
    stale = [h for p in cli(*plan).json()["plans"] for h in p["hazards"] if h["code"] == "H26"]
    assert stale and "YR3" in stale[0]["message"] and "catalog update" in stale[0]["fix"], stale
    index.write_text(full)
    second = cli("catalog", "update", "--url", le_site)
    assert second.code == 0 and "added YR3 (RSA 2048, active)" in second.out, second.out
    assert not [h for p in cli(*plan).json()["plans"] for h in p["hazards"] if h["code"] == "H26"]
    again = cli("catalog", "update", "--url", le_site)
    assert "no change from the refreshed" in again.out
    from tlsa_manager.freshness import catalog_as_of

    when, origin = catalog_as_of(tmp_path / "state")  # the cli fixture's state directory
    assert origin == "refreshed" and abs(when.timestamp() - time.time()) < 60


def _h26(cli: CliRunner, tmp_path: Path, *parts: bytes) -> list[dict[str, str]]:
    chain = pki.write(tmp_path / "chain.pem", *parts)
    zone = tmp_path / "db.example.test"
    zone.write_text("$ORIGIN example.test.\n$TTL 3600\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n"
                    "  IN NS ns1\nns1 IN A 192.0.2.1\nmail IN A 192.0.2.25\n")
    result = cli("--json", "plan", "mail.example.test", "--cert", chain, "--zone-file", zone)
    assert result.code in (0, 4), result.err
    return [h for p in result.json()["plans"] for h in p["hazards"] if h["code"] == "H26"]


def test_h26_for_a_leaf_its_named_catalog_issuer_did_not_sign(cli: CliRunner, tmp_path: Path) -> None:
    """A leaf that names YE1 (which the catalog knows) but that YE1's key did not sign is
    still H26, but the message must not say the catalog does not know YE1 (the old text)."""
    from cryptography import x509

    ye1 = x509.load_pem_x509_certificate((LE_DATA / "ye1.pem").read_bytes())
    borrowed = pki.Issued(ye1, pki.make_key("p384"))  # YE1's name, another key
    leaf = pki.make_leaf(["mail.example.test"], borrowed)
    fake_ye1 = pki.make_ca("YE1", borrowed.key, org="Let's Encrypt")  # a YE1-named CA in the file
    for parts in ((leaf.pem,), (leaf.pem, fake_ye1.pem)):
        (hazard,) = _h26(cli, tmp_path, *parts)
        assert "names YE1 of Let's Encrypt as its issuer" in hazard["message"], hazard
        assert "YE1's key (in the issuer catalog) did not sign it" in hazard["message"]
        assert "does not know" not in hazard["message"]
        assert "test or staging certificate" in hazard["fix"] and "catalog update" in hazard["fix"]
    unknown = pki.make_ca("YE9", org="Let's Encrypt")  # a name the catalog has never seen
    (hazard,) = _h26(cli, tmp_path, pki.make_leaf(["mail.example.test"], unknown).pem)
    assert "YE9 of Let's Encrypt, which the issuer catalog does not know" in hazard["message"]


def test_an_active_ca_that_fails_to_download_keeps_the_catalog(cli: CliRunner, le_site: str, tmp_path: Path) -> None:
    """Before: a failed download of an active CA's PEM (a transient 404 or reset) was a
    warning, and the catalog was replaced without that CA: the next sync removed its
    pre-published "2 1 1". Now nothing is written (exit 1) and the catalog in use stays."""
    (tmp_path / "site" / "certs" / "gen-y" / "int-yr2.pem").unlink()
    result = cli("catalog", "update", "--url", le_site)
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert "int-yr2.pem" in result.err and "a CA listed as active; nothing was written" in result.err
    assert "still using the bundled catalog" in result.err
    assert cli("--json", "catalog", "list").json()["origin"] == "bundled"


def test_an_endless_answer_is_cut_off(cli: CliRunner) -> None:
    """Before: the whole answer was read into memory, with no bound: a URL that streams
    without end grew the process until the kernel killed it."""

    class Endless(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            try:
                while True:
                    self.wfile.write(b"<p>" + b"x" * 65536)
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.monotonic()
        result = cli("catalog", "update", "--url", f"http://127.0.0.1:{server.server_address[1]}/", "--timeout", "20")
    finally:
        server.shutdown()
        server.server_close()
    assert result.code == 1 and "sent more than 4 MiB" in result.err, result.err
    assert time.monotonic() - started < 20


def test_a_refreshed_catalog_file_others_can_write_is_refused(cli: CliRunner, le_site: str, tmp_path: Path) -> None:
    """Before: the catalog folder was checked, its files were not: a manifest.json left
    writable by every user (chmod 666 by hand, a restore from backup) let any user drop an
    active issuer, and the next sync removed its pre-published "2 1 1". Now exit 3, as for
    the folder."""
    assert cli("catalog", "update", "--url", le_site).code == 0
    manifest = tmp_path / "state" / "catalog" / "manifest.json"
    manifest.chmod(0o666)
    result = cli("--json", "catalog", "list")
    assert result.code == 3 and "the catalog file is writable by others (mode 666)" in result.err, result.err
    manifest.chmod(0o644)
    assert cli("--json", "catalog", "list").json()["origin"].startswith("refreshed")
