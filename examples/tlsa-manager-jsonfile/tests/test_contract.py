"""The example provider passes the contract every tlsa-manager provider passes."""

from __future__ import annotations

import json
from pathlib import Path

import dns.name
import pytest
from tlsa_manager_jsonfile import JsonFileProvider

from tlsa_manager.records import Tlsa
from tlsa_manager.testing import Backend, ProviderContract


class TestJsonFile(ProviderContract):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> Backend:
        path = tmp_path / "tlsa.json"
        provider = JsonFileProvider({"path": str(path)})

        def read_back(owner: dns.name.Name) -> tuple[frozenset[Tlsa], int | None]:
            """The file as another program reads it: plain json, no provider code."""
            if not path.exists():
                return frozenset(), None
            entry = json.loads(path.read_text()).get(owner.to_text().lower())
            if not entry:
                return frozenset(), None
            return frozenset(Tlsa.from_text(t) for t in entry["records"]), entry["ttl"]

        def external_add(owner: dns.name.Name, record: Tlsa) -> None:
            """Someone else's edit: rewrite the file by hand."""
            store = json.loads(path.read_text()) if path.exists() else {}
            entry = store.setdefault(owner.to_text().lower(), {"ttl": 300, "records": []})
            entry["records"].append(record.to_text().upper())  # other tools write upper-case hex
            path.write_text(json.dumps(store))

        return Backend(provider, read_back, external_add)
