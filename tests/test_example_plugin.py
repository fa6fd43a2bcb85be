"""The example plugin in examples/tlsa-manager-jsonfile: its own tests inherit the shipped
contract and pass; installed by its entry point alone, the CLI syncs through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tlsa_manager.records import Tlsa, owner_name

import pki
from conftest import REPO

EXAMPLE = REPO / "examples" / "tlsa-manager-jsonfile"


def installed_env(tmp_path: Path) -> dict[str, str]:
    """An environment where the example is "installed": its package on the path and a
    dist-info carrying exactly the entry points its pyproject.toml declares."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    points = project["entry-points"]["tlsa_manager.providers"]
    dist = tmp_path / "site" / f"tlsa_manager_jsonfile-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (dist / "entry_points.txt").write_text(
        "[tlsa_manager.providers]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(EXAMPLE)])}


def test_the_example_passes_the_contract_in_its_own_test_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(EXAMPLE),
         str(EXAMPLE / "tests")],
        capture_output=True, text=True, timeout=300, env=installed_env(tmp_path), cwd=EXAMPLE)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_the_cli_syncs_through_the_example_found_by_its_entry_point(tmp_path: Path) -> None:
    env = installed_env(tmp_path)
    host = "mx.example.test"
    leaf = pki.make_leaf([host], pki.make_ca("Example CA", pki.make_key("p256")), key=pki.make_key("p256"))
    cert = pki.write(tmp_path / "mx.pem", leaf.pem)
    store = tmp_path / "tlsa.json"
    config = tmp_path / "tlsa-manager.toml"
    config.write_text(f"""state_dir = "{tmp_path / 'state'}"
[providers.json]
type = "jsonfile"
path = "{store}"
[hosts."{host}"]
cert = "{cert}"
records = ["3 1 1"]
ttl = 300
""")
    run = [sys.executable, "-m", "tlsa_manager", "--config", str(config), "sync", host]
    first = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    held = json.loads(store.read_text())[owner_name(host).to_text().lower()]
    expected = subprocess.run([sys.executable, "-m", "tlsa_manager", "records", str(cert), "--usage", "3"],
                              capture_output=True, text=True, env=env, check=True).stdout
    assert {Tlsa.from_text(t) for t in held["records"]} == {Tlsa.from_text(expected)} and held["ttl"] == 300
    mtime = store.stat().st_mtime_ns
    again = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert store.stat().st_mtime_ns == mtime  # a no-op sync writes nothing


def test_the_contract_catches_a_provider_that_breaks_it(tmp_path: Path) -> None:
    """The suite has teeth: a provider that writes blindly (no compare-and-swap) and
    rewrites its file on every call (a no-op writes) fails exactly those tests."""
    (tmp_path / "test_broken.py").write_text('''
import json
import pytest
from tlsa_manager.records import Tlsa
from tlsa_manager.testing import Backend, ProviderContract
from tlsa_manager_jsonfile import JsonFileProvider


class Blind(JsonFileProvider):
    def apply(self, changeset):
        self.check_changes(changeset)
        store = self._load()
        for change in changeset.changes:
            key = change.owner.to_text().lower()
            held = {Tlsa.from_text(t) for t in store.get(key, {}).get("records", [])}
            store[key] = {"ttl": change.ttl,
                          "records": sorted(r.to_text() for r in (held - change.delete) | change.add)}
        self.path.write_text(json.dumps(store))
        self.writes += 1


class TestBlind(ProviderContract):
    @pytest.fixture
    def backend(self, tmp_path):
        path = tmp_path / "t.json"

        def read_back(owner):
            entry = json.loads(path.read_text()).get(owner.to_text().lower()) if path.exists() else None
            if not entry or not entry["records"]:
                return frozenset(), None
            return frozenset(Tlsa.from_text(t) for t in entry["records"]), entry["ttl"]

        def external_add(owner, record):
            store = json.loads(path.read_text()) if path.exists() else {}
            store.setdefault(owner.to_text().lower(), {"ttl": 300, "records": []})["records"].append(record.to_text())
            path.write_text(json.dumps(store))

        return Backend(Blind({"path": str(path)}), read_back, external_add)
''')
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "--rootdir", str(tmp_path),
         str(tmp_path / "test_broken.py")],
        capture_output=True, text=True, timeout=300, env=installed_env(tmp_path), cwd=tmp_path)
    failed = {line.split("::")[-1].split(" ")[0] for line in result.stdout.splitlines() if line.startswith("FAILED")}
    assert {"test_conflict_when_someone_else_changed_it_and_nothing_applied",
            "test_conflict_when_someone_else_created_it", "test_noop_writes_nothing"} <= failed, result.stdout[-3000:]
    assert "test_add_to_empty" not in failed and "test_remove_one_record" not in failed
