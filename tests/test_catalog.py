"""The bundled catalog: every "2 1 1" equals openssl's, statuses and key types equal the manifest."""

from __future__ import annotations

import json

import pytest

from tlsa_manager.catalog import load_bundled

from conftest import EXAMPLES, LE_DATA, CliRunner, openssl_tlsa_data

MANIFEST = json.loads((LE_DATA / "manifest.json").read_text())


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["name"] for e in MANIFEST])
def test_every_certificate_hash_equals_openssl(entry: dict[str, str]) -> None:
    catalog = load_bundled()
    oracle = openssl_tlsa_data(LE_DATA / entry["file"], 1, 1)
    issuer = catalog.by_spki(oracle)
    assert issuer is not None, f"{entry['file']} is not in the catalog"
    assert issuer.record.to_text() == f"2 1 1 {oracle}"
    assert entry["tlsa_2_1_1"] == f"2 1 1 {oracle}"
    assert issuer.key_type == entry["key_type"]
    assert entry["name"] in {c.name for c in issuer.certs}
    assert any(c.status == entry["status"] for c in issuer.certs if c.name == entry["name"])


def test_issuer_status_comes_from_manifest() -> None:
    catalog = load_bundled()
    by_name = {i.name: i for i in catalog.issuers}
    for entry in MANIFEST:
        if entry["status"] in ("active", "backup"):
            assert by_name[entry["ca"]].status == entry["status"]
    active_rsa = {i.name for i in catalog.intermediates("rsa", ["active"])}
    assert active_rsa == {e["ca"] for e in MANIFEST if e["status"] == "active" and e["key_type"] == "rsa"}
    # Roots and cross-signs are never offered as issuers to pin.
    assert not {i.name for i in catalog.intermediates(None, ["active", "backup", "retired", "root"])} & {
        "ISRG Root X1", "ISRG Root X2", "ISRG Root YE", "ISRG Root YR"}


def test_catalog_list_text_and_json(cli: CliRunner) -> None:
    result = cli("catalog", "list")
    assert result.code == 0
    lines = {line.split()[0]: line for line in result.out.splitlines()[2:]}
    yr2 = lines["YR2"].split()
    assert yr2[1:4] == ["RSA", "2048", "active"]
    assert yr2[-1] == openssl_tlsa_data(LE_DATA / "yr2.pem", 1, 1)
    assert "backup" in lines["YE3"]
    doc = cli("--json", "catalog", "list", "--status", "backup").json()
    assert sorted(i["name"] for i in doc["issuers"]) == ["YE3", "YR3"]


def test_catalog_show_names_issuer_and_siblings(cli: CliRunner) -> None:
    result = cli("catalog", "show", EXAMPLES / "mail.example.com" / "fullchain.pem")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].startswith("issuer: YE1, active")
    assert [line.split()[3] for line in lines[1:]] == ["YE2,", "YE3,"]
    rsa_leaf = cli("--json", "catalog", "show", LE_DATA / "yr1.pem")
    assert rsa_leaf.code == 1  # a CA file alone has no leaf, so no issuer to name
    # the example cert.pem names YE1 but another key signed it: said so, not "not in the catalog"
    borrowed = cli("catalog", "show", EXAMPLES / "mail.example.com" / "cert.pem")
    assert borrowed.code == 1 and borrowed.err.count("\n") == 1
    assert "the leaf names YE1 as its issuer, but YE1's key in the catalog (bundled) did not sign it" in borrowed.err
