"""An example tlsa-manager provider: TLSA RRsets kept in one JSON file.

Small on purpose, to show every part a real provider has (docs/providers.md):

- ``settings`` (unknown keys are refused for you) and ``secret_settings`` (none here);
- ``read(owners)``: what the backend holds, with the TTL;
- ``apply(changeset)``: ``check_changes`` first, then compare each owner with what the
  plan expected (``conflict(...)`` if it differs) and write everything at once;
- ``writes``/``requests``: the counters the contract suite and the docs use.

The file looks like ``{"_25._tcp.mx.example.com.": {"ttl": 300, "records": ["3 1 1 ab.."]}}``.
A lock file next to it makes read-compare-write one step against other writers, and the
new file replaces the old by rename, so a reader never sees half of one.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import dns.name

from tlsa_manager import provider_settings
from tlsa_manager.errors import ConfigError, ProviderError
from tlsa_manager.fsutil import atomic_write
from tlsa_manager.provider import Capabilities, ChangeSet, Provider, RRset, conflict
from tlsa_manager.records import Tlsa

Store = dict[str, dict[str, Any]]


class JsonFileProvider(Provider):
    """TLSA RRsets in a JSON file; compare-and-swap under a lock file."""

    name = "jsonfile"
    capabilities = Capabilities(
        atomic=True, compare_and_swap=True, eventual_propagation=False, can_list_nameservers=False
    )
    settings: ClassVar[Mapping[str, str]] = {
        "path": "the JSON file (created on the first write)",
        **provider_settings.nameservers(),  # described as every provider describes it
    }

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        if not config.get("path"):
            raise ConfigError("jsonfile provider needs path", 'add path = "/var/lib/dns/tlsa.json"')
        self.path = Path(str(config["path"]))

    def _load(self) -> Store:
        self.requests += 1
        try:
            with open(self.path, "rb") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ProviderError(
                f"{self.path}: cannot read the JSON store ({exc})", "fix or remove it"
            ) from None
        if not isinstance(data, dict):
            raise ProviderError(f"{self.path}: not a JSON object", "fix or remove it")
        return data

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _rrset(owner: dns.name.Name, store: Store) -> RRset:
        entry = store.get(owner.to_text().lower())
        if not entry or not entry.get("records"):
            return RRset(owner)
        return RRset(owner, frozenset(Tlsa.from_text(t) for t in entry["records"]), int(entry["ttl"]))

    def read(self, owners: Sequence[dns.name.Name]) -> dict[dns.name.Name, RRset]:
        store = self._load()
        return {owner: self._rrset(owner, store) for owner in owners}

    def apply(self, changeset: ChangeSet) -> None:
        changes = self.pending(changeset)  # refuses to empty a managed RRset or a too-low TTL
        if not changes:
            return  # a no-op writes nothing
        with self._locked():
            store = self._load()
            for change in changes:
                found = self._rrset(change.owner, store).records
                if found != change.expected:
                    raise conflict(change.owner, change.expected, found)  # nothing written yet
            for change in changes:
                store[change.owner.to_text().lower()] = {
                    "ttl": change.ttl,
                    "records": sorted(r.to_text() for r in change.result),
                }
            self.requests += 1
            atomic_write(self.path, (json.dumps(store, indent=1, sort_keys=True) + "\n").encode())
            self.writes += 1
