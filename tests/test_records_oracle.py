"""Every selector x matching type, for every key type, equals what openssl computes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsa_manager.records import MatchingType, Selector, Tlsa, Usage

import pki
from conftest import CliRunner, openssl_tlsa_data


@pytest.mark.parametrize("kind", pki.KEY_KINDS)
@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_leaf_matches_openssl(cli: CliRunner, key_chains: dict[str, dict[str, Path]], kind: str, selector: int, mtype: int) -> None:
    files = key_chains[kind]
    result = cli("records", files["cert"], "--usage", "3", "--selector", selector, "--mtype", mtype)
    assert result.code == 0, result.err
    assert result.out == f"3 {selector} {mtype} {openssl_tlsa_data(files['cert'], selector, mtype)}\n"


@pytest.mark.parametrize("kind", pki.KEY_KINDS)
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_bare_private_key_matches_openssl(cli: CliRunner, key_chains: dict[str, dict[str, Path]], kind: str, mtype: int) -> None:
    key = key_chains[kind]["key"]
    result = cli("records", key, "--usage", "3", "--selector", "1", "--mtype", mtype)
    assert result.code == 0, result.err
    assert result.out == f"3 1 {mtype} {openssl_tlsa_data(key, 1, mtype, key=True)}\n"


@pytest.mark.parametrize("kind", ["rsa2048", "p256", "ed25519"])
def test_bare_public_key_and_der(cli: CliRunner, key_chains: dict[str, dict[str, Path]], kind: str, tmp_path: Path) -> None:
    """A public key file (PEM and DER) and a DER certificate give the same records."""
    from conftest import openssl

    files = key_chains[kind]
    pub_pem = pki.write(tmp_path / "pub.pem", openssl("pkey", "-in", str(files["key"]), "-pubout"))
    pub_der = pki.write(tmp_path / "pub.der", openssl("pkey", "-in", str(files["key"]), "-pubout", "-outform", "DER"))
    cert_der = pki.write(tmp_path / "cert.der", openssl("x509", "-in", str(files["cert"]), "-outform", "DER"))
    expected = f"3 1 1 {openssl_tlsa_data(files['cert'], 1, 1)}\n"
    for path in (pub_pem, pub_der, cert_der, files["key"]):
        result = cli("records", path)
        assert result.code == 0, result.err
        assert result.out == expected, path


def test_default_is_leaf_and_each_ca(cli: CliRunner, key_chains: dict[str, dict[str, Path]]) -> None:
    files = key_chains["p256"]
    result = cli("records", files["fullchain"])
    assert result.code == 0
    assert result.out.splitlines() == [
        f"3 1 1 {openssl_tlsa_data(files['cert'], 1, 1)}",
        f"2 1 1 {openssl_tlsa_data(files['inter'], 1, 1)}",
    ]


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [1, 2])
def test_ca_records_match_openssl(cli: CliRunner, key_chains: dict[str, dict[str, Path]], selector: int, mtype: int) -> None:
    files = key_chains["rsa3072"]
    result = cli("records", files["fullchain"], "--usage", "2", "--selector", selector, "--mtype", mtype)
    assert result.code == 0
    assert result.out == f"2 {selector} {mtype} {openssl_tlsa_data(files['inter'], selector, mtype)}\n"


@settings(max_examples=300, deadline=None)
@given(
    usage=st.integers(0, 3),
    selector=st.integers(0, 1),
    mtype=st.integers(0, 2),
    data=st.binary(min_size=1, max_size=300),
)
def test_presentation_is_dnspythons(usage: int, selector: int, mtype: int, data: bytes) -> None:
    """Our presentation (written out so printing needs no dnspython) is dnspython's, and parses back."""
    size = {1: 32, 2: 64}.get(mtype)
    data = (data * 64)[:size] if size else data
    record = Tlsa(Usage(usage), Selector(selector), MatchingType(mtype), data)
    assert record.to_text() == record.to_rdata().to_text(chunksize=0)
    assert Tlsa.from_text(record.to_text()) == record
