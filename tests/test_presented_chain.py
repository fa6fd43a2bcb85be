"""Issue 12, class 7, against a real Postfix: the MTA serves another chain than the config's.

Postfix (STARTTLS on a loopback port) serves chain A while the config's live file holds
chain B for the same host; the DNS is the real BIND primary + secondary.  Before the
first publish the tool probes the MTA on the host's own port: A's records are published
too (mail keeps flowing to what Postfix really presents), the run reports H27 and no
deploy happens while it holds, even once a staged new key's gate has passed.  When
Postfix serves the configured file, the next sync confirms it and the rollover proceeds.
What is asserted is what a user sees: exit codes, the JSON hazards, the records both
servers serve (dig), what Postfix presents (openssl s_client) and the live file.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_truth import dig, openssl_311, presented_311

import pki
from conftest import probed_host_lines, rfc2136_config
from servers import ZONE, Bind, Postfix, require

NOW = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
HOST = f"presented.{ZONE}"
GATE = 2 * 2 + 1 + 0.7  # 2 x TTL(2 s) + slack(1 s), and a little


@dataclass
class Site:
    """Postfix serving ``mta_file`` (chain A); the config's live file (chain B) elsewhere."""

    root: Path
    config: Path
    live: Path
    staged: Path
    mta_file: Path
    postfix: Postfix
    bind: Bind
    #: each chain's leaf PEM by name: "A" (served), "B" (configured), "C" (the staged new key)
    leaves: dict[str, bytes]

    @property
    def owner(self) -> str:
        return f"_{self.postfix.port}._tcp.{HOST}."

    def sync(self) -> tuple[int, dict[str, Any], str]:
        """``tlsa-manager --json sync HOST`` as a user runs it: exit code, JSON, stderr."""
        result = subprocess.run([sys.executable, "-m", "tlsa_manager", "--config", str(self.config), "--json",
                                 "sync", HOST], capture_output=True, text=True, timeout=120)
        return result.returncode, json.loads(result.stdout) if result.stdout.strip() else {}, result.stderr

    def status(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tlsa_manager", "--config", str(self.config), "status", HOST],
                              capture_output=True, text=True, timeout=120)

    def served(self) -> list[str]:
        """The TLSA RRset, once both servers agree on it (read with dig)."""
        primary, secondary = self.bind.primary.endpoint, self.bind.secondary.endpoint
        deadline = time.monotonic() + 10
        while (on_primary := dig(primary, self.owner)) != dig(secondary, self.owner):
            assert time.monotonic() < deadline, "the secondary never caught up"
            time.sleep(0.2)
        return on_primary


def hazard_codes(doc: dict[str, Any]) -> set[str]:
    """The hazards of the run's last plan of the host (what is left after the run)."""
    return {h["code"] for h in doc["hosts"][0]["plans"][-1]["hazards"]}


@pytest.fixture
def site(bind: Bind) -> Iterator[Site]:
    require("postfix", "postconf", "openssl", "dig")
    root = Path(tempfile.mkdtemp(prefix="tlsa-presented-"))
    root.chmod(0o755)
    state = root / "state"
    _ca_root, cas = pki.make_test_catalog(state / "catalog", "Presented Root X1", not_before=NOW)
    live, staged, mta = root / "live", root / "staged", root / "mta"
    leaves = {}
    for name, where in (("A", mta), ("B", live)):
        leaf = pki.make_leaf([HOST], cas["TE1"], key=pki.make_key("p256"), not_before=NOW)
        pki.write(where / "ecdsa.pem", leaf.key_pem, leaf.pem, cas["TE1"].pem)
        leaves[name] = leaf.pem
    staged.mkdir()
    new = pki.make_leaf([HOST], cas["TE1"], key=pki.make_key("p256"), not_before=NOW)
    leaves["C"] = new.pem
    postfix = Postfix(root / "postfix", HOST, [mta / "ecdsa.pem"])
    config = root / "tlsa-manager.toml"
    config.write_text(rfc2136_config(state, bind, HOST, probed_host_lines(postfix, live / "ecdsa.pem", staged)))
    try:
        postfix.start()
        site = Site(root, config, live / "ecdsa.pem", staged / "ecdsa.pem", mta / "ecdsa.pem", postfix, bind,
                    leaves)
        # the renewal is staged before the first sync: every sync below could deploy it
        pki.write(site.staged, new.key_pem, new.pem, cas["TE1"].pem)
        yield site
    finally:
        postfix.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_an_mta_serving_another_chain_is_h27_and_blocks_deploys_until_it_serves_the_config(site: Site) -> None:
    a, b, c = (openssl_311(site.leaves[n]) for n in "ABC")
    assert presented_311(site.postfix.port) == a

    # 1. First sync: the probe finds A; A's records go out with B's and C's, H27, no deploy.
    code, doc, err = site.sync()
    assert code == 4, (code, err, doc)  # a risk hazard left after the run, not a failed deploy
    assert "H27" in hazard_codes(doc), doc
    h27 = next(h for p in doc["hosts"][0]["plans"] for h in p["hazards"] if h["code"] == "H27")
    assert h27["message"].startswith("the MTA presents another ECDSA chain than the configured live ecdsa.pem"), h27
    assert not doc["hosts"][0]["failures"] and not doc["hosts"][0]["deployed"], doc
    assert {a, b, c} <= set(site.served())
    assert site.live.read_bytes().count(site.leaves["B"]) == 1 and site.staged.exists()
    assert presented_311(site.postfix.port) == a
    status = site.status()  # says the same: a hazard (4), not an unconfirmed deploy of ours (1)
    assert status.returncode == 4, status.stdout + status.stderr
    assert "H27" in status.stdout and "not confirmed" not in status.stdout, status.stdout

    # 2. The staged key's gate has passed; Postfix still serves A: still H27, still no deploy.
    time.sleep(GATE)
    code, doc, err = site.sync()
    assert code == 4, (code, err, doc)
    assert "H27" in hazard_codes(doc), doc
    assert not doc["hosts"][0]["deployed"] and not doc["hosts"][0]["failures"], doc
    assert any(n.startswith("staged ecdsa.pem: not deployed") and "(H27)" in n for n in doc["hosts"][0]["notes"]), doc
    assert site.leaves["B"] in site.live.read_bytes() and site.staged.exists()
    assert {a, b, c} <= set(site.served())
    assert presented_311(site.postfix.port) == a

    # 3. The admin points Postfix at the configured live file: the probe now sees B, H27
    #    goes, and the rollover proceeds (C deployed, reloaded, verified by the probe).
    subprocess.run(["chgrp", "postfix", str(site.live)], check=True)
    site.live.chmod(0o640)
    subprocess.run(["postconf", "-c", str(site.postfix.conf), "-e", f"smtpd_tls_chain_files = {site.live}"],
                   check=True, capture_output=True)
    subprocess.run(site.postfix.reload, check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while presented_311(site.postfix.port) != b:
        assert time.monotonic() < deadline, "postfix did not pick up the live file"
        time.sleep(0.3)
    code, doc, err = site.sync()
    assert code == 0, (code, err, doc)
    assert "H27" not in hazard_codes(doc), doc
    assert "the MTA now presents the configured live ecdsa.pem (H27 is over)" in doc["hosts"][0]["notes"], doc
    assert doc["hosts"][0]["deployed"] == ["staged ecdsa.pem"], doc
    assert site.leaves["C"] in site.live.read_bytes() and not site.staged.exists()
    assert presented_311(site.postfix.port) == c
    # A (no longer presented) and B (replaced, the deploy verified by the probe) are gone
    served = set(site.served())
    assert c in served and a not in served and b not in served, served
