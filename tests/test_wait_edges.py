"""The propagation wait after a write, at its edges, against real servers: what the
primary is read for while the provider writes (earlyviews.py), and the servers a
provider only needs for discovery."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dns.name

from tlsa_manager.ledger import Ledger
from tlsa_manager.records import Tlsa, owner_name

import pki
from cloud_rollover import one_host
from conftest import LE_DATA, CliRunner, bind_read
from servers import ZONE, Bind, PowerDns

ISSUER = (LE_DATA / "ye1.pem").read_bytes()


def test_a_discovery_server_that_does_not_resolve_is_not_needed_with_nameservers(
    cli: CliRunner, powerdns: PowerDns, tmp_path: Path
) -> None:
    """With ``nameservers`` configured the provider's discovery server is never needed:
    a ``dns_server`` name that does not resolve here (a name only the DNS of another
    network knows) must not fail the write."""
    config, host, owner, _live, _staged = one_host(tmp_path, f"""
type = "powerdns"
api_url = "{powerdns.api_url}"
api_key_file = "{powerdns.key_file}"
dns_server = "pdns-dns.invalid"
""", nameservers=[powerdns.endpoint])
    result = cli("--config", config, "sync", host)
    assert result.code == 0, result.err
    assert len(bind_read(powerdns.port, owner)[0]) == 4


def fleet_config(path: Path, bind: Bind, hosts: list[tuple[str, Path]], nameservers: list[str],
                 ports: list[int]) -> Path:
    lines = [f'state_dir = "{path.parent / "state"}"',
             f'[providers.bind]\ntype = "rfc2136"\nserver = "{bind.primary.endpoint}"\n'
             f'tsig_key_file = "{bind.key_file}"']
    servers = ", ".join(f'"{n}"' for n in nameservers)
    for name, cert in hosts:
        lines.append(f'[hosts."{name}"]\nprovider = "bind"\ncert = "{cert}"\nttl = 2\nslack = "1s"\n'
                     f"ports = {ports}\nnameservers = [{servers}]")
    path.write_text("\n".join(lines) + "\n")
    return path


def replace_rrset(bind: Bind, owner: dns.name.Name, record: Tlsa) -> None:
    """Someone else's write: the owner's TLSA RRset replaced, with BIND's own nsupdate."""
    script = (f"server 127.0.0.1 {bind.primary.port}\nzone {bind.zone}\n"
              f"update delete {owner} IN TLSA\nupdate add {owner} 300 IN TLSA {record.to_text()}\nsend\n")
    subprocess.run(["nsupdate", "-k", str(bind.key_file)], input=script.encode(), check=True, capture_output=True)


#: six owner names per host: 100 hosts are 600 owners, several UPDATE messages
PORTS = [25, 465, 587, 2525, 1025, 1026]


def six_port_fleet(tmp_path: Path, bind: Bind, prefix: str) -> tuple[list[str], Path]:
    """100 hosts of six ports each, observed at the primary alone."""
    names = [f"{prefix}{i}-{os.getpid()}.{ZONE}" for i in range(100)]
    hosts = list(zip(names, pki.fleet(tmp_path / "certs", names, ISSUER), strict=True))
    return names, fleet_config(tmp_path / "fleet.toml", bind, hosts, [bind.primary.endpoint], PORTS)


def write_while_syncing(
    config: Path, bind: Bind, seen: Callable[[str], bool], write: Callable[[], None], *argv: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run ``tlsa-manager --config CONFIG ARGV`` (a sync) as a process; as soon as ``seen`` is true of the primary's log
    since the start, stop the run (SIGSTOP), make someone else's ``write``, let the run
    go on.  Returns the run and the log it made."""
    log = bind.primary.directory / "named.log"
    start = log.stat().st_size
    process = subprocess.Popen(
        [sys.executable, "-m", "tlsa_manager", "--config", str(config), *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline and process.poll() is None, "the log never showed it"
            data = log.read_bytes()
            start = 0 if len(data) < start else start  # the log rotated (size 20m)
            if seen(data[start:].decode(errors="replace")):
                break
            time.sleep(0.002)
        os.killpg(process.pid, signal.SIGSTOP)
        try:
            write()
        finally:
            os.killpg(process.pid, signal.SIGCONT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # a failed assertion above: stop the run, by its group
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=10)
    done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return done, log.read_bytes()[start:].decode(errors="replace")


def test_a_write_by_someone_else_while_ours_goes_on_is_seen(tmp_path: Path, bind: Bind) -> None:
    """The primary is read for each UPDATE message as it commits (earlyviews.py).  Someone
    else replaces an owner of our first message while our later messages still go in:
    the run must not record that the primary serves what it served before that write.

    Deterministic: the run is stopped (SIGSTOP) as soon as BIND logs the early read of
    that owner, the other write is made, the run continues; BIND's log shows that the
    other write went in before our last message."""
    names, config = six_port_fleet(tmp_path, bind, "sw")
    owner = owner_name(names[0], 25)
    last = owner_name(names[-1], PORTS[-1])
    theirs = Tlsa.from_text("3 1 1 " + "ee" * 32)
    updates_before = bind.primary.stats(bind.keys).get("UPDATE", 0)
    written = re.compile(rf"adding an RR at '{re.escape(owner.to_text(omit_final_dot=True))}' TLSA")
    tcp_read = re.compile(rf"query: {re.escape(owner.to_text(omit_final_dot=True))} IN TLSA [+-]\S*T")

    def read_early(text: str) -> bool:
        commit = written.search(text)
        return commit is not None and tcp_read.search(text, commit.end()) is not None

    bind.primary.rndc(bind.keys, "querylog", "on")
    try:
        run, text = write_while_syncing(
            config, bind, read_early, lambda: replace_rrset(bind, owner, theirs),
            "sync", "--propagation-timeout", "3")
    finally:
        bind.primary.rndc(bind.keys, "querylog", "off")
    err = run.stderr
    assert bind.primary.stats(bind.keys).get("UPDATE", 0) - updates_before >= 4  # our messages, theirs
    other = text.index(f"adding an RR at '{owner.to_text(omit_final_dot=True)}' TLSA 3 1 1 EEEEEEEE")
    ours_last = text.index(f"adding an RR at '{last.to_text(omit_final_dot=True)}' TLSA")
    assert other < ours_last, "precondition: the other write went in while ours went on"
    assert bind_read(bind.primary.port, owner)[0] == frozenset({theirs})
    seen = Ledger(tmp_path / "state").load().host(names[0]).owners[owner.to_text()].history.entries[-1]
    assert [v.records for v in seen.views] == [frozenset({theirs})], (run.returncode, err)
    assert f"warning: 1 of 600 owners not served by every server after 3 s: {owner.to_text()} (" in err, err


def test_a_conflict_on_a_later_update_still_reports_what_the_earlier_ones_wrote(
    tmp_path: Path, bind: Bind
) -> None:
    """A fleet's write goes in several UPDATE messages.  Someone else adds a record at an
    owner of our last message after our first one committed: the last message fails its
    prerequisite, and the run re-plans the hosts it held.  The hosts whose records the
    earlier messages did write must be reported as written (``applied``), not as
    unchanged: before, ``sync --json`` listed only the re-planned hosts of the last message
    as applied (21 of 100), although the run wrote all 100."""
    names, config = six_port_fleet(tmp_path, bind, "cf")
    first = owner_name(names[0], 25)
    victim = owner_name(names[-1], PORTS[-1])
    theirs = Tlsa.from_text("3 1 1 " + "dd" * 32)
    written = re.compile(rf"adding an RR at '{re.escape(first.to_text(omit_final_dot=True))}' TLSA")
    run, _log = write_while_syncing(
        config, bind, lambda text: written.search(text) is not None, lambda: replace_rrset(bind, victim, theirs),
        "--json", "sync", "--propagation-timeout", "10")
    out, err = run.stdout, run.stderr
    assert run.returncode == 0, err
    reports = {h["host"]: h for h in json.loads(out)["hosts"]}
    for name in names:  # every host's records went in during this run
        assert len(bind_read(bind.primary.port, owner_name(name, 25))[0]) == 4, name
    not_reported = [n for n in names if not reports[n]["applied"]]
    assert not_reported == [], f"{len(not_reported)} written hosts reported as unchanged"
    assert theirs in bind_read(bind.primary.port, victim)[0]  # the other writer's record stays


def test_a_primary_that_stops_during_the_write_fails_it_without_waiting_for_the_early_read(
    tmp_path: Path, bind: Bind
) -> None:
    """The primary stops answering (SIGSTOP) while the run reads the owners of our first
    UPDATE from it and sends the next.  The write fails after the provider's timeout (2 s
    here) and the run says so then: before, it first waited for that read of the stopped
    primary to give up too (a TCP timeout, a new connection, a UDP try: 15 s)."""
    names, config = six_port_fleet(tmp_path, bind, "ps")
    config.write_text(config.read_text().replace("tsig_key_file = ", "timeout = 2\ntsig_key_file = ", 1))
    first = owner_name(names[0], 25)
    written = re.compile(rf"adding an RR at '{re.escape(first.to_text(omit_final_dot=True))}' TLSA")
    tcp_read = re.compile(rf"query: {re.escape(first.to_text(omit_final_dot=True))} IN TLSA [+-]\S*T")

    def read_early(text: str) -> bool:
        commit = written.search(text)
        return commit is not None and tcp_read.search(text, commit.end()) is not None

    stopped: list[float] = []

    def stop_primary() -> None:
        bind.primary.pause()
        stopped.append(time.monotonic())

    bind.primary.rndc(bind.keys, "querylog", "on")
    try:
        try:
            run, _log = write_while_syncing(config, bind, read_early, stop_primary, "sync")
            took = time.monotonic() - stopped[0]
        finally:
            bind.primary.resume()
    finally:
        bind.primary.rndc(bind.keys, "querylog", "off")
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and "the update may or may not have been applied" in run.stderr
    assert took < 8, f"the failure came {took:.1f} s after the primary stopped"
