"""The ledger's JSON form: :func:`encode` and :func:`decode` of a :class:`LedgerData`.

One host per line, so that a diff of two ledgers stays per host and a reader can find
a host with grep.  Each line is exactly ``json.dumps(HOST): json.dumps(HOST_DOC,
sort_keys=True)``, but assembled from the texts of its parts: a fleet's ledger repeats
the same record sets in every owner's managed set and in every server's answer, and the
same server names and observations from one save to the next, so each of those is
turned into JSON once (by identity, see :class:`EncodeMemo`) instead of once per use.
A ledger of a thousand hosts is written in milliseconds.  tests/test_ledger.py holds
the text to the plain ``json.dumps`` form.
"""

from __future__ import annotations

import json
import operator
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from tlsa_manager.errors import StateError, UsageError
from tlsa_manager.facts import chain_from_json, chain_to_json
from tlsa_manager.observations import History, Observation, ServerView
from tlsa_manager.records import Tlsa
from tlsa_manager.state import DeployIntent, HostRecord, LedgerData, OwnerRecord

SCHEMA = 1

_RESTORE = "restore it from backup or move it aside knowingly: a new ledger restarts all gates"


class EncodeMemo:
    """What the saves of one run share: the JSON texts of immutable parts of a ledger
    (record sets, server answers, observations) by the identity of the object they were
    made from, and each host's line with what it was made from.  Each entry keeps its
    object alive, so no id is reused for another object while the entry exists.

    A run saves after every phase, and a phase adds one observation per owner (or merges
    an identical one, keeping its answers); the older observations, the managed sets and
    most answers are the same objects as at the last save, and a phase that changed
    nothing of a host leaves its line as it was.  A save adds a few entries per owner;
    past ``_PARTS_PER_OWNER`` per owner the table starts again, so a run that saves often
    keeps a bounded memo."""

    def __init__(self) -> None:
        #: by host name: its line as the last save wrote it (see :class:`_Line`)
        self.hosts: dict[str, _Line] = {}
        self.owner_count = 0
        self.parts: dict[int, tuple[object, str]] = {}
        #: by value: a fleet has few servers and few distinct records
        self.strings: dict[str, str] = {}
        self.records: dict[int, tuple[Tlsa, str]] = {}
        #: by the ids of the records in a set: (a set of those very records, its text)
        self.members: dict[frozenset[int], tuple[frozenset[Tlsa], str]] = {}


#: a host's clock: its keys and values (the objects, kept alive here) and its text
_Clock = tuple[tuple[str, ...], tuple[Any, ...], str]


class _Line(NamedTuple):
    """A host's line and the values it was made from: it stands while the host holds the
    very same owners' managed sets and histories and clock values (identity, not
    equality: ``1`` and ``1.0`` are equal, their JSON is not) and no deploy."""

    #: (owner name, managed, history) in the order of the owners dict
    owners: tuple[tuple[str, frozenset[Tlsa], History], ...]
    clock: _Clock
    negative_ttl: int | None
    unverified: bool
    #: no deploy: a line with deploys is made anew at every save
    reusable: bool
    text: str


_PARTS_PER_OWNER = 24
_INF = float("inf")


def _value(value: object) -> str:
    """``json.dumps(value, sort_keys=True)``, without the encoder's setup for a scalar."""
    kind = type(value)
    if (kind is float and -_INF < value < _INF) or kind is int:  # type: ignore[operator]
        return repr(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is str:
        return encode_basestring_ascii(value)  # type: ignore[arg-type]
    return json.dumps(value, sort_keys=True)


def _string(text: str, memo: EncodeMemo) -> str:
    known = memo.strings.get(text)
    if known is None:
        if len(memo.strings) >= 65536:
            memo.strings.clear()
        known = memo.strings[text] = encode_basestring_ascii(text)
    return known


def _record_set(records: frozenset[Tlsa], memo: EncodeMemo) -> str:
    """``json.dumps(sorted(r.to_text() for r in records))``.  The quoted texts sort as
    the plain ones do: a record's text is ``U S M HEX``, so where one is a prefix of
    another the longer goes on with a hex digit, which sorts after the quote."""
    hit = memo.parts.get(id(records))
    if hit is not None and hit[0] is records:
        return hit[1]
    # another set of the same record objects (a server's answer of what was published):
    # records are shared objects (records.py), the set that made the text keeps them alive
    members = frozenset(map(id, records))
    hit = memo.members.get(members)
    if hit is None:
        texts = memo.records
        if len(texts) >= 65536:
            texts.clear()
        quoted = []
        for record in records:
            known = texts.get(id(record))
            if known is None or known[0] is not record:
                known = texts[id(record)] = (record, encode_basestring_ascii(record.to_text()))
            quoted.append(known[1])
        quoted.sort()
        if len(memo.members) >= 65536:
            memo.members.clear()
        hit = memo.members[members] = (records, "[" + ", ".join(quoted) + "]")
    memo.parts[id(records)] = (records, hit[1])
    return hit[1]


def _observation(obs: Observation, memo: EncodeMemo) -> str:
    parts = memo.parts
    views = []
    for view in obs.views:
        hit = parts.get(id(view))
        if hit is None or hit[0] is not view:
            records = "null" if view.records is None else _record_set(view.records, memo)
            copy = f'"provider_copy": {_value(view.provider_copy)}, ' if view.provider_copy else ""
            error, ttl = view.error, view.ttl
            error_text = "null" if error is None else _value(error)
            ttl_text = repr(ttl) if type(ttl) is int else _value(ttl)
            hit = parts[id(view)] = (
                view,
                f'{{"error": {error_text}, {copy}"records": {records}, '
                f'"server": {_string(view.server, memo)}, "ttl": {ttl_text}}}',
            )
        views.append(hit[1])
    text = f'{{"first": {_value(obs.first)}, "last": {_value(obs.last)}, "views": [{", ".join(views)}]}}'
    parts[id(obs)] = (obs, text)
    return text


def _owner(history: History, managed: frozenset[Tlsa], memo: EncodeMemo) -> str:
    parts = memo.parts
    entries = []
    for obs in history.entries:
        hit = parts.get(id(obs))
        entries.append(hit[1] if hit is not None and hit[0] is obs else _observation(obs, memo))
    return (
        f'{{"blind": {_value(history.blind)}, "history": [{", ".join(entries)}], '
        f'"managed": {_record_set(managed, memo)}, "since": {_value(history.since)}}}'
    )


def _same_clock(clock: dict[str, Any], known: _Clock) -> bool:
    """The very same key and value objects, in the same order, as at the last save (a
    copy of the dict, as ``LedgerData.copy`` makes, shares them)."""
    keys, values = known[0], known[1]
    return (
        len(clock) == len(keys)
        and all(map(operator.is_, keys, clock))
        and all(map(operator.is_, values, clock.values()))
    )


def _clock(clock: dict[str, Any], memo: EncodeMemo) -> _Clock:
    """``json.dumps(clock, sort_keys=True)`` with what it was made from."""
    if all(type(k) is str for k in clock):
        text = "{" + ", ".join([f"{_string(k, memo)}: {_value(v)}" for k, v in sorted(clock.items())]) + "}"
    else:
        text = json.dumps(clock, sort_keys=True)
    return (tuple(clock), tuple(clock.values()), text)


def _unchanged(hr: HostRecord, line: _Line) -> bool:
    """Would ``hr`` be written as ``line``?  A run saves after every phase and a phase
    changes few hosts (or one observation per owner): the test is by identity."""
    negative, was = hr.negative_ttl, line.negative_ttl
    if (
        not line.reusable
        or hr.deploys
        or hr.unverified is not line.unverified
        or (negative is not was and not (type(negative) is int and type(was) is int and negative == was))
        or len(hr.owners) != len(line.owners)
        or not _same_clock(hr.clock, line.clock)
    ):
        return False
    owners = hr.owners
    for name, managed, history in line.owners:
        rec = owners.get(name)
        if rec is None or rec.managed is not managed or rec.history is not history:
            return False
    return True


def _line(host: str, hr: HostRecord, last: _Line | None, memo: EncodeMemo) -> _Line:
    """``json.dumps(host): json.dumps(host's doc, sort_keys=True)``, from the texts of its
    parts (an owner's observations and record sets, as earlier saves made them)."""
    texts = []
    for owner, rec in sorted(hr.owners.items()):
        texts.append(f"{_string(owner, memo)}: {_owner(rec.history, rec.managed, memo)}")
    clock = last.clock if last is not None and _same_clock(hr.clock, last.clock) else _clock(hr.clock, memo)
    deploys = (
        json.dumps({label: _intent_to_json(i) for label, i in hr.deploys.items()}, sort_keys=True)
        if hr.deploys
        else "{}"
    )
    negative = "" if hr.negative_ttl is None else f'"negative_ttl": {_value(hr.negative_ttl)}, '
    text = (
        f'{encode_basestring_ascii(host)}: {{"clock": {clock[2]}, '
        f'"deploys": {deploys}, {negative}'
        f'"owners": {{{", ".join(texts)}}}, "unverified": {_value(hr.unverified)}}}'
    )
    owners = tuple((name, rec.managed, rec.history) for name, rec in hr.owners.items())
    return _Line(owners, clock, hr.negative_ttl, hr.unverified, not hr.deploys, text)


def encode(data: LedgerData, memo: EncodeMemo | None = None) -> str:
    """The ledger's text.  With ``memo`` (the same object for every save of a run) the
    hosts and parts an earlier save turned into JSON are not turned into JSON again; the
    text is the same as without it."""
    memo = memo if memo is not None else EncodeMemo()
    last, hosts, owners = memo.hosts, {}, 0
    if len(memo.parts) > _PARTS_PER_OWNER * memo.owner_count + 4096:
        memo.parts.clear()
    lines = []
    for host, hr in sorted(data.hosts.items()):
        line = last.get(host)
        if line is None or not _unchanged(hr, line):
            line = _line(host, hr, line, memo)
        hosts[host] = line
        owners += len(line.owners)
        lines.append(line.text)
    memo.hosts, memo.owner_count = hosts, owners
    return '{"hosts": {\n' + ",\n".join(lines) + "\n}, " + f'"schema": {SCHEMA}}}\n'


def decode(text: str, source: str = "ledger") -> LedgerData:
    try:
        doc = json.loads(text)
    except RecursionError:
        raise StateError(f"{source} is nested too deeply to be a ledger", _RESTORE) from None
    except ValueError as exc:
        raise StateError(f"{source} is not valid JSON ({exc})", _RESTORE) from None
    if not isinstance(doc, dict) or "schema" not in doc:
        raise StateError(f"{source} is not a tlsa-manager ledger", "check --state-dir")
    if doc["schema"] != SCHEMA or isinstance(doc["schema"], bool):
        raise StateError(
            f"{source} has schema {doc['schema']!r}; this version reads schema {SCHEMA}",
            "use the tlsa-manager version that wrote it",
        )
    try:
        return _Decoder().ledger(doc["hosts"])
    except (KeyError, TypeError, ValueError, AttributeError, UsageError, OverflowError) as exc:
        raise StateError(f"{source} is damaged ({type(exc).__name__}: {exc})", _RESTORE) from None


class _Decoder:
    """One read: equal record sets and server answers become one shared object (they are
    immutable), as a fleet's ledger repeats them for every owner and server."""

    def __init__(self) -> None:
        self.record_sets: dict[tuple[str, ...], frozenset[Tlsa]] = {}
        self.views: dict[tuple[Any, ...], ServerView] = {}

    def ledger(self, hosts: dict[str, Any]) -> LedgerData:
        data = LedgerData()
        for host, hdoc in hosts.items():
            hr = data.host(host)
            hr.deploys = {str(k): _intent_from_json(v) for k, v in dict(hdoc.get("deploys", {})).items()}
            neg = hdoc.get("negative_ttl")
            hr.negative_ttl = int(neg) if neg is not None else None
            hr.clock = dict(hdoc.get("clock", {}))
            hr.unverified = bool(hdoc.get("unverified", False))
            for owner, odoc in hdoc["owners"].items():
                hr.owners[owner] = OwnerRecord(self.record_set(odoc["managed"]), self.history(odoc))
        return data

    def record_set(self, texts: list[str]) -> frozenset[Tlsa]:
        key = tuple(texts)
        known = self.record_sets.get(key)
        if known is None:
            known = self.record_sets[key] = frozenset(Tlsa.from_text(t) for t in texts)
        return known

    def history(self, odoc: dict[str, Any]) -> History:
        entries = tuple(self.observation(o) for o in odoc["history"])
        since = odoc.get("since", entries[0].first if entries else None)
        return History(entries, None if since is None else float(since), bool(odoc.get("blind", False)))

    def observation(self, doc: dict[str, Any]) -> Observation:
        views = tuple(self.view(v) for v in doc["views"])
        return Observation(float(doc["first"]), float(doc["last"]), views)

    def view(self, v: dict[str, Any]) -> ServerView:
        server, records = v["server"], v["records"]
        ttl, error, copy = v.get("ttl"), v.get("error"), bool(v.get("provider_copy", False))
        key = None
        if (
            type(server) is str
            and (ttl is None or type(ttl) is int)
            and (error is None or type(error) is str)
        ):
            try:  # only values whose equals are of one type: 1, 1.0 and true stay apart
                key = (server, None if records is None else tuple(records), ttl, error, copy)
                known = self.views.get(key)
            except TypeError:  # not from this version (a list in the records): read as it is
                key = None
            else:
                if known is not None:
                    return known
        found = None if records is None else self.record_set(records)
        view = ServerView(str(server), found, ttl, error, copy)
        if key is not None:
            self.views[key] = view
        return view


def _intent_to_json(intent: DeployIntent) -> dict[str, Any]:
    return {
        "deployed": chain_to_json(intent.deployed),
        "previous": [chain_to_json(c) for c in intent.previous],
        "since": intent.since,
    }


def _intent_from_json(doc: dict[str, Any]) -> DeployIntent:
    """A damaged entry fails here, when the ledger is read, not later in the engine."""
    return DeployIntent(
        chain_from_json(doc["deployed"]),
        tuple(chain_from_json(c) for c in doc["previous"]),
        float(doc["since"]),
    )
