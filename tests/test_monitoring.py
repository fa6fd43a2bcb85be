"""Monitoring in production: Prometheus metrics (textfile and exporter), shipped units.

Metrics come from a real run: BIND (signed, TSIG) and Unbound on loopback, Postfix
serving an RSA and an ECDSA chain, `sync` publishing through RFC 2136, a staged chain
waiting for its gate.  They are read back with prometheus_client's own text parser
and compared with independent sources: openssl (DANE verdicts, leaf expiry), `status`
(gates), the clock.  The units are checked with `systemd-analyze verify`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

import pki
from conftest import REPO, rfc2136_config
from servers import ZONE, Bind, Postfix, Unbound, free_port, require
from test_check import wait_resolvable
from tls_servers import s_client_dane

HOST = f"monitor.{ZONE}"
NOW = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
CLI = [sys.executable, "-m", "tlsa_manager"]


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by name and sorted labels, as Prometheus itself would read it."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture(scope="module")
def site(bind: Bind) -> Iterator[dict[str, Any]]:
    require("unbound", "postfix", "openssl", "nsupdate")
    root = Path(tempfile.mkdtemp(prefix="tlsa-monitor-"))
    root.chmod(0o755)
    ca = pki.make_ca("Test Root M", pki.make_key("p384"), not_before=NOW)
    inter = {k: pki.make_ca(f"TM-{k}", pki.make_key(kind), issuer=ca, not_before=NOW)
             for k, kind in (("ecdsa", "p384"), ("rsa", "rsa2048"))}
    live, staged, state = root / "live", root / "staged", root / "state"
    for d in (live, staged, state):
        d.mkdir()
    certs = []
    for alg, kind in (("ecdsa", "p256"), ("rsa", "rsa2048")):
        leaf = pki.make_leaf([HOST], inter[alg], key=pki.make_key(kind), not_before=NOW)
        certs.append(pki.write(live / f"{alg}.pem", leaf.key_pem, leaf.pem, inter[alg].pem))
    subprocess.run(["nsupdate", "-k", str(bind.key_file)], check=True, capture_output=True, input=(
        f"server 127.0.0.1 {bind.primary.port}\nzone {ZONE}\nupdate add {HOST} 60 IN A 127.0.0.1\nsend\n").encode())
    unbound = Unbound(root / "unbound", bind)
    postfix = Postfix(root / "postfix", HOST, certs)
    try:
        unbound.start()
        postfix.start()
        wait_resolvable(unbound.port, [HOST])
        config = root / "tlsa-manager.toml"
        config.write_text(rfc2136_config(state, bind, HOST, f"""
ports = [{postfix.port}]
certs = ["{certs[0]}", "{certs[1]}"]
staged_dir = "{staged}"
"""))
        before = time.time()
        sync = subprocess.run([*CLI, "--config", str(config), "sync"], capture_output=True, text=True)
        assert sync.returncode == 0, sync.stderr
        # a renewal waiting for its gate: a new ECDSA key, pre-published by the next sync
        nxt = pki.make_leaf([HOST], inter["ecdsa"], key=pki.make_key("p256"), not_before=NOW)
        pki.write(staged / "ecdsa.pem", nxt.key_pem, nxt.pem, inter["ecdsa"].pem)
        sync = subprocess.run([*CLI, "--config", str(config), "sync"], capture_output=True, text=True)
        assert sync.returncode == 0, sync.stderr
        yield {"root": root, "config": config, "state": state, "resolver": f"127.0.0.1:{unbound.port}",
               "unbound": unbound, "postfix": postfix, "certs": certs, "before": before}
    finally:
        postfix.stop()
        unbound.stop()
        shutil.rmtree(root, ignore_errors=True)


def validated_records(site: dict[str, Any]) -> list[str]:
    owner = f"_{site['postfix'].port}._tcp.{HOST}"
    reply = dns.query.udp(dns.message.make_query(owner, dns.rdatatype.TLSA, want_dnssec=True), "127.0.0.1",
                          port=site["unbound"].port, timeout=5)
    return [r.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.TLSA for r in rrset]


def not_after(path: Path) -> float:
    """The leaf's expiry as openssl prints it (the oracle)."""
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(path)], capture_output=True,
                         text=True, check=True).stdout.strip().split("=", 1)[1]
    return dt.datetime.strptime(out, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.UTC).timestamp()


def check_samples(site: dict[str, Any], samples: dict[Any, float]) -> None:
    host, port = HOST, str(site["postfix"].port)
    records = validated_records(site)
    accepted = sum(s_client_dane(int(port), HOST, records, alg, "smtp") for alg in ("ecdsa", "rsa"))
    assert accepted == 2, records
    assert value(samples, "tlsa_manager_dane_verdict", host=host, port=port, verdict="pass") == 1
    assert value(samples, "tlsa_manager_dane_verdict", host=host, port=port, verdict="fail") == 0
    assert value(samples, "tlsa_manager_endpoints", host=host, port=port) == 2
    assert value(samples, "tlsa_manager_endpoints_verified", host=host, port=port) == accepted
    for severity in ("fatal", "risk", "info"):
        assert ("tlsa_manager_check_hazards", (("host", host), ("port", port), ("severity", severity))) in samples
        assert ("tlsa_manager_plan_hazards", (("host", host), ("severity", severity))) in samples
    assert value(samples, "tlsa_manager_check_hazards", host=host, port=port, severity="fatal") == 0
    collected = value(samples, "tlsa_manager_collected_timestamp_seconds")
    for cert in site["certs"]:
        kind = "ecdsa" if "ecdsa" in cert.name else "rsa"
        assert value(samples, "tlsa_manager_leaf_expiry_timestamp_seconds", host=host, chain=kind,
                     file=str(cert)) == not_after(cert)
    synced = value(samples, "tlsa_manager_last_sync_success_timestamp_seconds", host=host)
    assert site["before"] < synced <= collected
    as_of = dt.datetime(2026, 8, 21, tzinfo=dt.UTC).timestamp()  # data/letsencrypt/as-of.json
    assert abs(value(samples, "tlsa_manager_catalog_age_seconds", origin="bundled") - (collected - as_of)) < 120
    status = json.loads(subprocess.run([*CLI, "--json", "--config", str(site["config"]), "status"],
                                       capture_output=True, text=True, check=True).stdout)
    gates = {g["chain"]: g for h in status["hosts"] for g in h["gates"]}
    assert gates and status["catalog"]["origin"] == "bundled"
    assert abs(status["catalog"]["age_seconds"] - value(samples, "tlsa_manager_catalog_age_seconds",
                                                        origin="bundled")) < 120
    for chain, gate in gates.items():
        ready = value(samples, "tlsa_manager_staged_chain_ready", host=host, chain=chain)
        left = value(samples, "tlsa_manager_staged_chain_live_in_seconds", host=host, chain=chain)
        if ready:
            assert left == 0
        else:
            opens = dt.datetime.fromisoformat(gate["opens_at"].replace("Z", "+00:00")).timestamp()
            started = collected - value(samples, "tlsa_manager_collect_duration_seconds")
            assert left > 0 and abs(left - (opens - started)) < 1.5, (left, gate)  # opens_at: whole seconds


def test_textfile_metrics_match_the_oracles(site: dict[str, Any]) -> None:
    folder = site["root"] / "textfile"
    folder.mkdir()
    out = folder / "tlsa-manager.prom"
    result = subprocess.run([*CLI, "--config", str(site["config"]), "metrics", "--output", str(out),
                             "--resolver", site["resolver"], "--timeout", "5"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in folder.iterdir()] == ["tlsa-manager.prom"]  # no temp file left behind
    assert out.stat().st_mode & 0o777 == 0o644  # node_exporter runs as another user
    check_samples(site, parse(out.read_text()))


def test_exporter_serves_the_same_metrics(site: dict[str, Any]) -> None:
    port = free_port()
    log = site["root"] / "exporter.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([*CLI, "--config", str(site["config"]), "exporter", "--listen",
                                    f"127.0.0.1:{port}", "--resolver", site["resolver"], "--timeout", "5"],
                                   stdout=subprocess.DEVNULL, stderr=out)
    try:
        deadline, text = time.monotonic() + 60, None
        while time.monotonic() < deadline and text is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
                    text = response.read().decode()
            except OSError:
                assert process.poll() is None, log.read_text()
                time.sleep(0.2)
        assert text is not None
        check_samples(site, parse(text))
        # the second scrape within --interval is served from the cache: same collection time
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            again = parse(response.read().decode())
        assert value(again, "tlsa_manager_collected_timestamp_seconds") == value(
            parse(text), "tlsa_manager_collected_timestamp_seconds")
        assert f"serving http://127.0.0.1:{port}/metrics" in log.read_text()
    finally:
        process.terminate()
        process.wait(10)


def test_offline_metrics_and_bad_output_path(site: dict[str, Any]) -> None:
    result = subprocess.run([*CLI, "--config", str(site["config"]), "metrics", "--no-check", "--output", "-"],
                            capture_output=True, text=True)
    samples = parse(result.stdout)
    assert result.returncode == 0 and not any(name == "tlsa_manager_dane_verdict" for name, _ in samples)
    assert value(samples, "tlsa_manager_collect_errors", host=HOST) == 0
    bad = subprocess.run([*CLI, "--config", str(site["config"]), "metrics", "--no-check", "--output",
                          str(site["root"] / "nowhere" / "x.prom")], capture_output=True, text=True)
    assert bad.returncode in (1, 2) and bad.stderr.count("\n") == 1 and "nowhere" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_prometheus_client_is_imported_lazily() -> None:
    code = textwrap.dedent("""
        import importlib, pkgutil, sys, tlsa_manager
        for m in pkgutil.iter_modules(tlsa_manager.__path__):
            if m.name != "__main__":
                importlib.import_module("tlsa_manager." + m.name)
        print("prometheus_client" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------- units


def tool(name: str, package: str, what: str) -> str:
    """The path of a checking tool; without it the test skips loudly (fails under CI=true)."""
    found = shutil.which(name)
    if found is None:
        message = f"{what} NOT CHECKED: {name} missing (Debian package {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_units_install_and_verify(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "systemd", "UNITS")
    result = subprocess.run([*CLI, "install-units", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    units = sorted(p.name for p in tmp_path.iterdir())
    assert units == sorted(f"tlsa-manager-{n}.{t}" for n in ("sync", "check", "catalog") for t in ("service", "timer"))
    assert "systemctl enable --now" in result.stdout
    for unit in tmp_path.iterdir():
        assert "@TLSA_MANAGER@" not in unit.read_text()
        verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
        assert verify.returncode == 0 and not verify.stderr.strip(), (unit.name, verify.stderr)
    # sync every 15 minutes, as systemd itself computes the schedule
    calendar = next(line.split("=", 1)[1] for line in (tmp_path / "tlsa-manager-sync.timer").read_text().splitlines()
                    if line.startswith("OnCalendar="))
    shown = subprocess.run([analyze, "calendar", "--iterations", "3", calendar], capture_output=True, text=True,
                           check=True).stdout
    times = [dt.datetime.strptime(" ".join(line.split()[-3:-1]), "%Y-%m-%d %H:%M:%S")
             for line in shown.splitlines() if "Next elapse" in line or "Iter." in line]
    assert [b - a for a, b in itertools.pairwise(times)] == [dt.timedelta(minutes=15)] * 2, shown
    # a broken unit is caught by the same check (the test can fail)
    broken = tmp_path / "tlsa-manager-sync.service"
    broken.write_text(re.sub(r"ExecStart=\S+", "ExecStart=/nonexistent/tlsa-manager", broken.read_text()))
    assert subprocess.run([analyze, "verify", str(broken)], capture_output=True).returncode != 0


def test_units_refuse_a_planted_link_and_cron_is_printed(tmp_path: Path) -> None:
    (tmp_path / "tlsa-manager-sync.service").symlink_to("/etc/passwd")
    result = subprocess.run([*CLI, "install-units", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0 and "symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert Path("/etc/passwd").read_text().startswith("root:")
    cron = subprocess.run([*CLI, "install-units", "--cron"], capture_output=True, text=True, check=True).stdout
    jobs = [line.split() for line in cron.splitlines() if line and not line.startswith("#")]
    assert [j[0] for j in jobs] == ["*/15", "7-59/15", "23"] and all(j[5] == "root" for j in jobs)
    assert any("sync" in j for j in jobs) and any("metrics" in j for j in jobs)


def test_alert_rules_in_the_docs_are_valid(tmp_path: Path) -> None:
    import yaml

    text = (REPO / "docs" / "monitoring.md").read_text()
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    doc = yaml.safe_load(block)
    rules = [r for group in doc["groups"] for r in group["rules"]]
    assert rules and all({"alert", "expr"} <= set(r) for r in rules)
    names = {n for r in rules for n in re.findall(r"tlsa_manager_[a-z_]+", r["expr"])}
    from tlsa_manager.metrics import METRICS

    assert names <= set(METRICS), names - set(METRICS)
    assert all(f"`{name}`" in text for name in METRICS)  # the table lists every metric
    path = tmp_path / "rules.yml"
    path.write_text(block)
    check = subprocess.run([tool("promtool", "prometheus", "ALERT RULES"), "check", "rules", str(path)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_alert_rules_fire_as_documented(tmp_path: Path) -> None:
    """promtool's rule unit tests: a failing verdict alerts after 5 minutes, not before;
    an unverified endpoint alerts; a sync that stopped succeeding alerts after 2 hours."""
    promtool = tool("promtool", "prometheus", "ALERT RULES")
    text = (REPO / "docs" / "monitoring.md").read_text()
    (tmp_path / "rules.yml").write_text(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    labels = 'host="mail.example.com",port="25"'
    (tmp_path / "test.yml").write_text(textwrap.dedent(f"""
        rule_files: [rules.yml]
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              - series: 'tlsa_manager_dane_verdict{{{labels},verdict="fail"}}'
                values: '0 0 1x20'
              - series: 'tlsa_manager_endpoints{{{labels}}}'
                values: '2x22'
              - series: 'tlsa_manager_endpoints_verified{{{labels}}}'
                values: '2 2 1x20'
            alert_rule_test:
              - eval_time: 4m
                alertname: DaneFailing
                exp_alerts: []
              - eval_time: 10m
                alertname: DaneFailing
                exp_alerts:
                  - exp_labels: {{severity: critical, host: mail.example.com, port: "25", verdict: fail}}
                    exp_annotations:
                      summary: "DANE fails on mail.example.com port 25: DANE senders defer mail"
                      description: "run: tlsa-manager check mail.example.com --port 25"
              - eval_time: 20m
                alertname: DaneEndpointsUnverified
                exp_alerts:
                  - exp_labels: {{severity: critical, host: mail.example.com, port: "25"}}
                    exp_annotations:
                      summary: "mail.example.com port 25: some address or key type is not authenticated by TLSA"
          - interval: 1m
            input_series:  # the last success at minute 30, then none (the sample is still there)
              - series: 'tlsa_manager_last_sync_success_timestamp_seconds{{host="mail.example.com"}}'
                values: '0x29 1800x200'
            alert_rule_test:
              - eval_time: 2h
                alertname: DaneSyncNotSucceeding
                exp_alerts: []
              - eval_time: 3h
                alertname: DaneSyncNotSucceeding
                exp_alerts:
                  - exp_labels: {{severity: warning, host: mail.example.com}}
                    exp_annotations:
                      summary: "tlsa-manager sync of mail.example.com has not succeeded for 2 hours: staged chains do not go live"
    """))
    result = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_units_and_cron_carry_the_global_options(tmp_path: Path) -> None:
    """`install-units` with --config / --state-dir: every unit and cron job runs with them
    (absolute, quoted), not with the defaults; the catalog service may write that state
    directory; systemd still accepts the files and /bin/sh reads the cron words back."""
    analyze = tool("systemd-analyze", "systemd", "UNITS")
    work = tmp_path / "work dir"
    work.mkdir()
    config = work / "my 50% $HOME.toml"
    config.write_text('[hosts."mail.example.com"]\ncert = "fullchain.pem"\n'
                      '[providers.z]\ntype = "zonefile"\nzone_file = "db"\n')
    units = tmp_path / "units"
    units.mkdir(mode=0o755)
    state = "st'ate \"q\" 5%"
    result = subprocess.run([*CLI, "--config", config.name, "install-units", "--dir", str(units),
                             "--state-dir", state], capture_output=True, text=True, cwd=work)
    assert result.returncode == 0, result.stderr
    for name in ("sync", "check", "catalog"):
        text = (units / f"tlsa-manager-{name}.service").read_text()
        exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
        assert f'--config "{work}/my 50%% $$HOME.toml"' in exec_line, exec_line
        assert f'--state-dir "{work}/st\'ate \\"q\\" 5%%"' in exec_line, exec_line
    catalog = (units / "tlsa-manager-catalog.service").read_text()
    assert f'ReadWritePaths="{work}/st\'ate \\"q\\" 5%%"' in catalog
    verify = subprocess.run([analyze, "verify", *map(str, units.iterdir())], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    # cron: the shell gives the program back exactly the words given (cron turns \% into %)
    cron = subprocess.run([*CLI, "--config", config.name, "--state-dir", state, "install-units", "--cron"],
                          capture_output=True, text=True, cwd=work, check=True).stdout
    sync_job = next(line for line in cron.splitlines() if " sync " in line)
    command = sync_job.split(" root ", 1)[1].replace("\\%", "%")
    program = command.split(" ", 1)[0]
    echo = tmp_path / "argv.py"
    echo.write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    words = subprocess.run(["/bin/sh", "-c", command.replace(program, f"{sys.executable} {echo}", 1)],
                           capture_output=True, text=True, check=True).stdout
    assert json.loads(words) == ["--config", str(config), "--state-dir", str(work / state),
                                 "-q", "sync", "--all", "--wait-lock", "600"]
    # the config's own state_dir is where the catalog service writes when --state-dir is not given
    config.write_text(config.read_text().replace("[hosts", 'state_dir = "/srv/tlsa"\n[hosts', 1))
    subprocess.run([*CLI, "--config", str(config), "install-units", "--dir", str(units)], check=True,
                   capture_output=True)
    assert "ReadWritePaths=/srv/tlsa\n" in (units / "tlsa-manager-catalog.service").read_text()
    # $TLSA_MANAGER_STATE_DIR of the installing shell: a timer never sees it, so the units
    # carry it as --state-dir (unless the config names its own state_dir, which wins)
    env = {**os.environ, "TLSA_MANAGER_STATE_DIR": str(tmp_path / "env-state")}
    cron = subprocess.run([*CLI, "install-units", "--cron"], capture_output=True, text=True, env=env,
                          check=True).stdout
    assert f"--state-dir {tmp_path / 'env-state'} -q sync" in cron, cron
    cron = subprocess.run([*CLI, "--config", str(config), "install-units", "--cron"], capture_output=True,
                          text=True, env=env, check=True).stdout
    assert "--state-dir" not in cron and "env-state" not in cron, cron


def test_units_refuse_what_a_timer_could_not_run(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir(mode=0o755)
    cases = [
        (["--config", str(tmp_path / "none.toml")], 2, "no such configuration file"),
        (["--state-dir", "a\nb"], 2, "control character"),
        (["--json"], 2, "not JSON"),
    ]
    for extra, code, words in cases:
        for mode in (["--dir", str(units)], ["--cron"]):
            result = subprocess.run([*CLI, *extra, "install-units", *mode], capture_output=True, text=True)
            assert result.returncode == code and words in result.stderr, (extra, mode, result.stderr)
            assert len(result.stderr.splitlines()) == 1 and not result.stdout
    assert not list(units.iterdir())


def test_live_check_compares_the_providers_nameservers(site: dict[str, Any]) -> None:
    """docs/config.md: a host without `nameservers` uses its provider's. Before, the live
    check of `metrics` ignored the provider's list and asked the zone's NS names on port
    53 instead: tlsa_manager_check_hazards{severity="risk"} 2 (H7, both timing out) on a
    healthy site configured as the docs' example is."""
    text = site["config"].read_text()
    line = next(x for x in text.splitlines() if x.startswith("nameservers = "))
    moved = text.replace(line + "\n", "").replace("[providers.bind]\n", f"[providers.bind]\n{line}\n")
    config = site["root"] / "provider-nameservers.toml"
    config.write_text(moved)
    result = subprocess.run([*CLI, "--config", str(config), "metrics", "--output", "-", "--resolver",
                             site["resolver"], "--timeout", "2"], capture_output=True, text=True)
    samples = parse(result.stdout)
    port = str(site["postfix"].port)
    assert value(samples, "tlsa_manager_dane_verdict", host=HOST, port=port, verdict="pass") == 1, result.stderr
    assert value(samples, "tlsa_manager_check_hazards", host=HOST, port=port, severity="risk") == 0
