"""The ledger: round trip, atomic writes, the lock, and corrupt files are never reset."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# -- the text: exactly the plain json.dumps form (issue 14 assembles it from cached parts) ------

def reference_text(data: LedgerData) -> str:
    """The ledger's text as json.dumps writes it: one host per line, keys sorted."""
    import json

    from tlsa_manager.facts import chain_to_json

    lines = []
    for host, hr in sorted(data.hosts.items()):
        doc: dict[str, object] = {
            "clock": hr.clock,
            "deploys": {label: {"deployed": chain_to_json(i.deployed),
                                "previous": [chain_to_json(c) for c in i.previous], "since": i.since}
                        for label, i in hr.deploys.items()},
            "owners": {owner: {
                "managed": sorted(r.to_text() for r in rec.managed),
                "history": [{"first": o.first, "last": o.last, "views": [
                    {"server": v.server, "records": None if v.records is None else sorted(r.to_text() for r in v.records),
                     "ttl": v.ttl, "error": v.error, **({"provider_copy": True} if v.provider_copy else {})}
                    for v in o.views]} for o in rec.history.entries],
                "since": rec.history.since, "blind": rec.history.blind} for owner, rec in hr.owners.items()},
            "unverified": hr.unverified,
        }
        if hr.negative_ttl is not None:
            doc["negative_ttl"] = hr.negative_ttl
        lines.append(f"{json.dumps(host)}: {json.dumps(doc, sort_keys=True)}")
    return '{"hosts": {\n' + ",\n".join(lines) + '\n}, "schema": 1}\n'


def _ledgers() -> Any:
    from hypothesis import strategies as st

    from tlsa_manager.observations import History, Observation
    from tlsa_manager.state import HostRecord, OwnerRecord

    # full data (mtype 0) of different lengths: a text that is a prefix of another sorts first
    full = st.builds(Tlsa, st.integers(0, 3), st.integers(0, 1), st.just(0), st.binary(min_size=1, max_size=5))
    sha256 = st.builds(Tlsa, st.integers(0, 3), st.integers(0, 1), st.just(1), st.binary(min_size=32, max_size=32))
    record = st.one_of(full, sha256)
    records = st.frozensets(record, max_size=4)
    text = st.text(max_size=12)
    floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-2, 2**40).map(float),
                       st.just(-0.0), st.just(1795677205.8655398))
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), floats, text)
    view = st.builds(ServerView, text, st.one_of(st.none(), records), st.one_of(st.none(), st.integers(0, 2**31), scalar),
                     st.one_of(st.none(), text), st.booleans())
    obs = st.builds(Observation, floats, floats, st.lists(view, max_size=3).map(tuple))
    history = st.builds(History, st.lists(obs, max_size=3).map(tuple), st.one_of(st.none(), floats), st.booleans())
    owner = st.builds(OwnerRecord, records, history)
    clock = st.dictionaries(text, st.one_of(scalar, st.lists(scalar, max_size=2)), max_size=3)
    host = st.builds(HostRecord, st.dictionaries(text, owner, max_size=3), st.just({}), clock, st.booleans(),
                     st.one_of(st.none(), st.integers(0, 2**31)))
    return st.builds(LedgerData, st.dictionaries(text, host, max_size=3))


def test_the_text_is_the_plain_json_dumps_form() -> None:
    """Whatever the values - odd floats, -0.0, huge ints, quotes and non-ASCII in names and
    errors, records of every length - each host's line is json.dumps of that host, and the
    same with the memo of an earlier save of the same objects."""
    from hypothesis import given, settings

    from tlsa_manager.ledger import EncodeMemo

    @settings(max_examples=300, deadline=None)
    @given(_ledgers())
    def check(data: LedgerData) -> None:
        expected = reference_text(data)
        assert encode(data) == expected
        memo = EncodeMemo()
        assert encode(data, memo) == expected
        assert encode(data, memo) == expected  # every part from the memo now

    check()


def test_the_sample_with_a_deploy_is_the_plain_json_dumps_form() -> None:
    data = sample()
    data.host("mail.example.com").clock = {"wall": 1000.5, "boot_id": "b\u00e9", "boot": 3.0}
    data.host("mail.example.com").negative_ttl = 300
    assert encode(data) == reference_text(data)


@pytest.mark.parametrize("new", [{"wall": 1}, {"wall": True}, {"wall": -0.0}, {"wall": "1.0"}, {"w": 1.0}])
def test_a_clock_changed_in_place_to_an_equal_value_is_written_anew(new: dict[str, object]) -> None:
    """The memo keeps a clock's text while the dict holds the very same values: 1.0 == 1 ==
    True and 0.0 == -0.0, but their JSON differs."""
    from tlsa_manager.ledger import EncodeMemo

    data = sample()
    clock = data.host("mail.example.com").clock
    clock.update({"wall": 1.0 if new != {"wall": -0.0} else 0.0})
    memo = EncodeMemo()
    encode(data, memo)
    clock.clear()
    clock.update(new)
    assert encode(data, memo) == reference_text(data)


def _second_owner(data: LedgerData) -> None:
    other = data.host("mail.example.com").owner("_465._tcp.mail.example.com.")
    other.managed = frozenset({REC})


def _equal_new_set(data: LedgerData) -> None:
    owner = data.host("mail.example.com").owners["_25._tcp.mail.example.com."]
    owner.managed = frozenset({Tlsa.from_text("2 1 1 " + "cd" * 32)})


def _renamed_owner(data: LedgerData) -> None:
    owners = data.host("mail.example.com").owners
    owners["_26._tcp.mail.example.com."] = owners.pop("_25._tcp.mail.example.com.")


def _observed(data: LedgerData) -> None:
    owner = data.host("mail.example.com").owners["_25._tcp.mail.example.com."]
    owner.history = owner.history.observe(2000.0, [ServerView("ns1", frozenset({REC}), 300)])


@pytest.mark.parametrize(
    "change",
    [
        _second_owner,
        _equal_new_set,
        _renamed_owner,
        _observed,
        lambda data: data.host("mail.example.com").owners.clear(),
        lambda data: setattr(data.host("mail.example.com"), "negative_ttl", 300.0),
        lambda data: setattr(data.host("mail.example.com"), "negative_ttl", None),
        lambda data: setattr(data.host("mail.example.com"), "unverified", True),
        lambda data: setattr(data.host("mail.example.com"), "clock", {"wall": 1.0}),
        lambda data: data.host("mail.example.com").clock.update(wall=-0.0),
        lambda data: data.host("mail.example.com").deploys.update(other=DeployIntent(OLD, (), 5.0)),
        lambda data: data.host("mail.example.com").deploys.clear(),
        lambda data: data.hosts.pop("mail.example.com"),
        lambda data: data.host("mx2.example.com").owner("_25._tcp.mx2.example.com."),
    ],
)
def test_a_host_changed_in_place_between_saves_is_written_anew(change: Callable[[LedgerData], None]) -> None:
    """A save reuses a host's line while the host holds the very same parts as at the last
    save; any change to one of its containers (an owner added, renamed or given another
    set or history, the negative TTL, the flags, the clock, a deploy) is written."""
    from tlsa_manager.ledger import EncodeMemo

    for deploys in (True, False):
        data = sample()
        host = data.host("mail.example.com")
        host.clock, host.negative_ttl = {"wall": 0.0, "boot": 3.5}, 300
        if not deploys:
            host.deploys.clear()
        memo = EncodeMemo()
        assert encode(data, memo) == encode(data, memo) == reference_text(data)
        change(data)
        assert encode(data, memo) == reference_text(data)
        assert encode(data, memo) == reference_text(data)


def test_a_clock_key_changed_in_place_to_an_equal_key_is_written_anew() -> None:
    """1 and True are equal dict keys with the same hash, but json.dumps writes "1" and
    "true": the memo keeps a clock's text only for the very same key objects."""
    from tlsa_manager.ledger import EncodeMemo

    data = sample()
    wall = 1.5
    clock = data.host("mail.example.com").clock
    clock[1] = wall  # type: ignore[index]  # what a hand-edited or foreign ledger could hold
    memo = EncodeMemo()
    assert encode(data, memo) == reference_text(data)
    clock.clear()
    clock[True] = wall  # type: ignore[index]
    assert encode(data, memo) == reference_text(data) and '"true": 1.5' in encode(data, memo)
    data.host("mail.example.com").clock = dict(clock)  # a copy shares the keys and values
    assert encode(data, memo) == reference_text(data)


def test_a_ledger_of_the_indented_format_loads_and_is_written_in_the_current_one(tmp_path: Path) -> None:
    """Before issue 14 the ledger was json.dumps(indent=1), without since, blind, clock,
    unverified or negative_ttl: such a file still loads, the history's start is its
    first observation, and the next save writes the one-host-per-line form."""
    import json

    rec = REC.to_text()
    view = {"server": "ns1", "records": [rec], "ttl": 300, "error": None}
    doc = {"schema": 1, "hosts": {"mail.example.com": {"deploys": {}, "owners": {"_25._tcp.mail.example.com.": {
        "managed": [rec], "history": [{"first": 1000, "last": 1500.5, "views": [view, dict(view, server="ns2")]}]}}}}}
    ledger = Ledger(tmp_path / "state")
    with ledger.locked():
        fd = os.open(ledger.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
        os.close(fd)
        data = ledger.load()
        history = data.host("mail.example.com").owners["_25._tcp.mail.example.com."].history
        assert history.since == 1000.0 and not history.blind and data.host("mail.example.com").clock == {}
        views = history.entries[0].views
        assert [v.server for v in views] == ["ns1", "ns2"] and views[0].records == views[1].records == frozenset({REC})
        ledger.save(data)
    text = ledger.path.read_text()
    assert text == reference_text(data) and text.count("\n") == 3
    assert encode(ledger.load()) == text


def test_equal_answers_are_shared_on_load_but_values_of_another_type_stay_apart() -> None:
    """The loader shares equal record sets and answers between owners (one object each),
    but a ttl of 60.0 or true, written by hand, is not the answer with ttl 60."""
    import json

    rec = REC.to_text()
    owners = {f"_25._tcp.mx{i}.example.com.": {"managed": [rec], "history": [{"first": 1.0, "last": 2.0, "views": [
        {"server": "ns1", "records": [rec], "ttl": ttl, "error": None}]}]} for i, ttl in enumerate([60, 60, 60.0, True])}
    text = json.dumps({"schema": 1, "hosts": {"mx.example.com": {"owners": owners}}})
    from tlsa_manager.ledger import decode

    host = decode(text).host("mx.example.com")
    views = [host.owners[o].history.entries[0].views[0] for o in owners]
    assert views[0] is views[1] and views[2] is not views[0] and views[3] is not views[0]
    assert [type(v.ttl) for v in views] == [int, int, float, bool]
    assert all(host.owners[o].managed is views[0].records for o in owners)


def test_sets_of_the_same_records_and_of_others_are_each_written_as_they_are() -> None:
    """A set made of the very record objects of another set reuses its text; a set with
    one record more or less, or a record of equal value but its own object, does not."""
    from tlsa_manager.ledger import EncodeMemo
    from tlsa_manager.observations import History, Observation

    a, b = Tlsa.from_text("3 1 1 " + "ab" * 32), Tlsa.from_text("2 1 1 " + "cd" * 32)
    twin = Tlsa(a.usage, a.selector, a.mtype, bytes(a.data))
    data = LedgerData()
    views = tuple(ServerView(f"ns{i}", s, 60) for i, s in enumerate(
        [frozenset({b, a}), frozenset([a]), frozenset({twin, b}), frozenset(), frozenset({b})]))
    owner = data.host("mx.example.com").owner("_25._tcp.mx.example.com.")
    owner.managed = frozenset({a, b})
    owner.history = History((Observation(1.0, 2.0, views),), 1.0)
    memo = EncodeMemo()
    for _ in range(2):
        assert encode(data, memo) == reference_text(data)
