"""The ledger: round trip, atomic writes, the lock, and corrupt files are never reset."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tlsa_manager.errors import StateError
from tlsa_manager.facts import CertFacts, ChainFacts
from tlsa_manager.ledger import DeployIntent, Ledger, LedgerData, encode
from tlsa_manager.observations import ServerView
from tlsa_manager.records import Tlsa

REC = Tlsa.from_text("3 1 1 " + "ab" * 32)


def sample() -> LedgerData:
    data = LedgerData()
    owner = data.host("mail.example.com").owner("_25._tcp.mail.example.com.")
    owner.managed = frozenset({REC})
    owner.history = owner.history.observe(1000.0, [ServerView("ns1", frozenset({REC}), 300),
                                                   ServerView("ns2", None, None, "timeout")])
    data.host("mail.example.com").deploys["staged ecdsa.pem"] = DeployIntent(CHAIN, (OLD,), 1000.0)
    return data


CHAIN = ChainFacts("staged ecdsa.pem", CertFacts(b"new-spki", b"new-cert", "mx"), "ecdsa",
                   (CertFacts(b"ca-spki", b"ca-cert", "YE2"),), issuer_name="YE2")
OLD = ChainFacts("live ecdsa.pem", CertFacts(b"old-spki", None, "(key)"), "ecdsa", ())


def test_deploy_journal_keeps_the_replaced_chain_exactly(tmp_path: Path) -> None:
    """The chain a deploy replaced lives only in the ledger until the reload is confirmed."""
    ledger = Ledger(tmp_path / "state")
    with ledger.locked():
        ledger.save(sample())
    entry = ledger.load().host("mail.example.com").deploys["staged ecdsa.pem"]
    assert entry.deployed == CHAIN and entry.previous[0] == OLD
    assert "PRIVATE" not in ledger.path.read_text()


def test_round_trip_and_mode(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    with ledger.locked():
        ledger.save(sample())
    loaded = ledger.load()
    assert encode(loaded) == encode(sample())
    assert (os.stat(ledger.path).st_mode & 0o777) == 0o600
    assert not [p for p in ledger.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_missing_file_is_empty_history(tmp_path: Path) -> None:
    assert Ledger(tmp_path).load().hosts == {}


@pytest.mark.parametrize(("content", "fragment"), [
    ("{not json", "is not valid JSON"),
    ('{"hosts": {}}', "is not a tlsa-manager ledger"),
    ('{"schema": 99, "hosts": {}}', "schema 99"),
    ('{"schema": 1, "hosts": {"h": {"owners": {"o": {"managed": ["3 1 1 zz"], "history": []}}}}}', "is damaged"),
])
def test_corrupt_or_unknown_is_an_error_and_the_file_stays(tmp_path: Path, content: str, fragment: str) -> None:
    ledger = Ledger(tmp_path)
    ledger.path.write_text(content)
    with pytest.raises(StateError, match=fragment) as info:
        ledger.load()
    assert "a new ledger restarts all gates" in str(info.value) or "schema" in str(info.value) or "check" in str(info.value)
    assert ledger.path.read_text() == content


def _hold_lock(state: str, ready: multiprocessing.synchronize.Event, release: multiprocessing.synchronize.Event) -> None:
    with Ledger(Path(state)).locked():
        ready.set()
        release.wait(10)


def test_lock_keeps_a_second_run_out(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        start = time.monotonic()
        with pytest.raises(StateError, match="another tlsa-manager run holds"), Ledger(tmp_path).locked(wait=0.3):
            pass
        assert time.monotonic() - start >= 0.3
    finally:
        release.set()
        holder.join(10)
    with Ledger(tmp_path).locked():
        pass  # free again once the other run ended


def test_a_ledger_of_the_untyped_journal_loads_as_typed_intents(tmp_path: Path) -> None:
    """The deploy journal became a typed DeployIntent (issue 15) without a schema change: a
    ledger written before, with an integer ``since``, loads and is written back the same."""
    import json

    from tlsa_manager.facts import chain_to_json

    entry = {"deployed": chain_to_json(CHAIN), "previous": [chain_to_json(OLD)], "since": 1000}
    doc = {"schema": 1, "hosts": {"mail.example.com": {"owners": {}, "deploys": {"staged ecdsa.pem": entry},
                                                      "clock": {}, "unverified": False}}}
    ledger = Ledger(tmp_path / "state")
    with ledger.locked():
        fd = os.open(ledger.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, json.dumps(doc).encode())
        os.close(fd)
    loaded = ledger.load()
    assert loaded.host("mail.example.com").deploys == {"staged ecdsa.pem": DeployIntent(CHAIN, (OLD,), 1000.0)}
    again = json.loads(encode(loaded))["hosts"]["mail.example.com"]["deploys"]["staged ecdsa.pem"]
    assert again == entry


def test_saves_of_one_run_write_what_a_fresh_encode_writes(tmp_path: Path) -> None:
    """A run saves after every phase and reuses the JSON of owners it did not touch
    (issue 14); every change between two saves - a record managed, an observation, a
    deploy journalled and confirmed, the clocks, a new owner, a host gone - must still
    reach the file exactly as a fresh encode writes it, and the file must still load."""
    import json

    ledger = Ledger(tmp_path / "state")
    data = sample()
    host = data.host("mail.example.com")
    owner = host.owner("_25._tcp.mail.example.com.")
    other = Tlsa.from_text("2 1 1 " + "cd" * 32)
    steps: list[Callable[[], object]] = [
        lambda: None,
        lambda: setattr(owner, "managed", owner.managed | {other}),
        lambda: setattr(owner, "history", owner.history.observe(2000.0, [ServerView("ns1", frozenset({other}), 60)])),
        lambda: host.deploys.pop("staged ecdsa.pem"),
        lambda: host.clock.update({"wall": 2000.0, "boot": "b"}),
        lambda: setattr(host, "negative_ttl", 300),
        lambda: setattr(host, "unverified", True),
        lambda: setattr(host.owner("_465._tcp.mail.example.com."), "managed", frozenset({REC})),
        lambda: data.host("mx2.example.com").owner("_25._tcp.mx2.example.com."),
        lambda: data.hosts.pop("mx2.example.com"),
    ]
    with ledger.locked():
        for step in steps:
            step()
            ledger.save(data)
            text = ledger.path.read_text()
            assert text == encode(data)
            json.loads(text)
            assert encode(ledger.load()) == text
