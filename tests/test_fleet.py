"""A fleet in one run, and fleets side by side, against the real BIND primary and secondary.

What a server sees is counted by BIND itself (``rndc stats``); what it serves is read
back with plain dnspython; the leaf's 3 1 1 is computed by openssl.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tlsa_manager.records import Tlsa, owner_name

import pki
from conftest import LE_DATA, bind_read, openssl_tlsa_data
from servers import ZONE, Bind

ISSUER = (LE_DATA / "ye1.pem").read_bytes()


def write_config(path: Path, bind: Bind, hosts: list[tuple[str, Path]], *, state: Path) -> Path:
    servers = f'nameservers = ["{bind.primary.endpoint}", "{bind.secondary.endpoint}"]'
    lines = [
        f'state_dir = "{state}"',
        f'[providers.bind]\ntype = "rfc2136"\nserver = "{bind.primary.endpoint}"\ntsig_key_file = "{bind.key_file}"',
    ]
    for name, cert in hosts:
        lines.append(f'[hosts."{name}"]\nprovider = "bind"\ncert = "{cert}"\nttl = 2\nslack = "1s"\n{servers}')
    path.write_text("\n".join(lines) + "\n")
    return path


def tlsa(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tlsa_manager", *args], capture_output=True, text=True,
                          timeout=timeout)


def leaf_311(cert: Path, tmp: Path) -> Tlsa:
    """The leaf's 3 1 1 as openssl computes it (the file holds key, leaf, chain)."""
    text = cert.read_text()
    leaf = tmp / f"{cert.stem}.leaf.pem"
    leaf.write_text("-----BEGIN CERTIFICATE" + text.split("-----BEGIN CERTIFICATE")[1])
    return Tlsa.from_text("3 1 1 " + openssl_tlsa_data(leaf, 1, 1))


def served(bind: Bind, host: str) -> tuple[frozenset[Tlsa], frozenset[Tlsa]]:
    owner = owner_name(host)
    return bind_read(bind.primary.port, owner)[0], bind_read(bind.secondary.port, owner)[0]


def test_one_run_for_the_fleet_and_failures_stay_with_their_host(tmp_path: Path, bind: Bind) -> None:
    """30 hosts: one UPDATE, one DNSKEY per server, one TLSA query per owner and server
    per observation; a host with a broken certificate and a host in a zone the server
    does not serve fail alone, named on stderr, exit code 1."""
    names = [f"fl{i}-{os.getpid()}.{ZONE}" for i in range(30)]
    hosts = list(zip(names, pki.fleet(tmp_path / "certs", names, ISSUER), strict=True))
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    bad_cert, elsewhere = f"broken-{os.getpid()}.{ZONE}", "mx.not-served.test"
    config = write_config(tmp_path / "fleet.toml", bind, [*hosts, (bad_cert, broken), elsewhere_host(elsewhere, hosts)],
                          state=tmp_path / "state")
    before = bind.primary.stats(bind.keys), bind.secondary.stats(bind.keys)
    first = tlsa("--config", str(config), "sync")
    after = bind.primary.stats(bind.keys), bind.secondary.stats(bind.keys)
    assert first.returncode == 1, first.stderr
    assert f"error: {bad_cert}: " in first.stderr and f"error: {elsewhere}: " in first.stderr
    assert f"2 of 32 hosts failed: {bad_cert}, {elsewhere}" in first.stderr, first.stderr
    assert len(first.stderr.splitlines()) == 3, first.stderr  # one line each, then the summary
    for name, _cert in hosts:
        primary, secondary = served(bind, name)
        assert primary == secondary and len(primary) == 4, name  # 3 1 1 + the three YE issuers
    for name, cert in hosts[:3]:
        assert leaf_311(cert, tmp_path) in served(bind, name)[0]
    to_primary = {k: after[0].get(k, 0) - before[0].get(k, 0) for k in after[0]}
    to_secondary = {k: after[1].get(k, 0) - before[1].get(k, 0) for k in after[1]}
    assert to_primary.get("UPDATE") == 1, to_primary  # one change set for the zone, not 30
    assert to_primary.get("DNSKEY") == 1 and to_secondary.get("DNSKEY") == 1, (to_primary, to_secondary)
    # observe before, observe after, and the wait's polls of the last owner alone (one
    # every 50 ms while the secondary transfers; a loaded machine makes that two or
    # three): never the 30 owners polled again
    assert 2 * 30 < to_secondary.get("TLSA", 0) <= 2 * 30 + 10, to_secondary
    # The next run has nothing to write, and says so for the good hosts.
    again = tlsa("--config", str(config), "--json", "sync")
    assert again.returncode == 1
    doc = json.loads(again.stdout)["hosts"]
    failed = {h["host"]: h["error"] for h in doc if h["error"]}
    assert set(failed) == {bad_cert, elsewhere} and "not-served.test" in failed[elsewhere]
    assert all(h["applied"] == [] for h in doc if not h["error"])


def elsewhere_host(name: str, hosts: list[tuple[str, Path]]) -> tuple[str, Path]:
    """A host whose zone the configured server does not serve (its certificate is fine)."""
    return name, hosts[0][1]


def test_eight_fleets_at_once_with_kill_9(tmp_path: Path, bind: Bind) -> None:
    """8 sync processes, each its own config and state, 50 hosts each, one zone; some
    are killed with SIGKILL at random moments and run again.  Every host converges to
    its own records and no process removes another's."""
    rng = random.Random(1414)
    fleets: list[dict[str, Any]] = []
    for n in range(8):
        names = [f"f{n}h{i}-{os.getpid()}.{ZONE}" for i in range(50)]
        certs = pki.fleet(tmp_path / f"certs{n}", names, ISSUER)
        config = write_config(tmp_path / f"fleet{n}.toml", bind, list(zip(names, certs, strict=True)),
                              state=tmp_path / f"state{n}")
        fleets.append({"names": names, "certs": certs, "config": config})
    before = bind.primary.stats(bind.keys)
    start = time.monotonic()
    processes = [subprocess.Popen([sys.executable, "-m", "tlsa_manager", "--config", str(f["config"]), "--json",
                                   "sync"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
                 for f in fleets]
    victims = rng.sample(range(8), 3)
    killed = []
    for index in victims:
        time.sleep(rng.uniform(0.2, 1.5))
        if processes[index].poll() is None:
            os.killpg(processes[index].pid, signal.SIGKILL)
            killed.append(index)
    outputs = [p.communicate(timeout=120) for p in processes]
    conflicts = 0
    for index, (out, err) in enumerate(outputs):
        if index in killed:
            continue
        assert processes[index].returncode == 0, err.decode()
        conflicts += sum("conflict" in n for h in json.loads(out)["hosts"] for n in h["notes"])
    # Every process, killed or not, runs again until nothing is left to do.
    rounds = 0
    pending = list(range(8))
    while pending and rounds < 5:
        rounds += 1
        results = [(i, tlsa("--config", str(fleets[i]["config"]), "--json", "sync")) for i in pending]
        pending = []
        for i, result in results:
            assert result.returncode == 0, result.stderr
            hosts = json.loads(result.stdout)["hosts"]
            conflicts += sum("conflict" in n for h in hosts for n in h["notes"])
            if any(h["applied"] for h in hosts):
                pending.append(i)
    converged = time.monotonic() - start
    updates = bind.primary.stats(bind.keys).get("UPDATE", 0) - before.get("UPDATE", 0)
    assert not pending, f"still changing after {rounds} rounds: {pending}"
    for f in fleets:
        for name in f["names"]:
            primary, secondary = served(bind, name)
            assert primary == secondary and len(primary) == 4, (name, primary, secondary)
        for name, cert in list(zip(f["names"], f["certs"], strict=True))[:2]:
            assert leaf_311(cert, tmp_path) in served(bind, name)[0]
        plan = tlsa("--config", str(f["config"]), "--json", "plan")
        assert plan.returncode == 0 and all(not p["changes"] for p in json.loads(plan.stdout)["plans"])
    print(f"\n8 fleets x 50 hosts, {len(killed)} killed: converged in {converged:.1f} s, "
          f"{updates} UPDATEs, {conflicts} conflicts retried")


def test_server_discovery_once_per_zone_for_the_fleet(bind: Bind) -> None:
    """No nameservers configured: the NS of the zone are asked once for 20 hosts (the
    zone of each host found by one pipelined SOA query), and every host gets what the
    provider's own per-host discovery says."""
    import dns.name

    from tlsa_manager.catalog import load_bundled
    from tlsa_manager.config import HostSpec
    from tlsa_manager.hostports import LivePorts, Shared
    from tlsa_manager_providers.rfc2136 import Rfc2136Provider

    provider = Rfc2136Provider({"server": bind.primary.endpoint, "tsig_key_file": str(bind.key_file)})
    shared = Shared()
    hosts = [LivePorts(HostSpec(f"disc{i}.{ZONE}", "bind"), provider, load_bundled(), shared=shared) for i in range(20)]
    before = bind.primary.stats(bind.keys)
    shared.discover(hosts)
    endpoints = [h.endpoints() for h in hosts]
    after = bind.primary.stats(bind.keys)
    seen = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert seen.get("NS") == 1 and seen.get("SOA") == 20, seen
    expected = provider.nameservers(dns.name.from_text(f"disc0.{ZONE}"))
    assert all(e == expected for e in endpoints) and len(expected) == 2


def test_kill_9_between_the_zone_write_and_its_observation(tmp_path: Path, bind: Bind) -> None:
    """A fleet run killed after its one UPDATE, while it waits for a lagging secondary:
    the next run converges every host (nothing written twice, nothing lost)."""
    names = [f"kw{i}-{os.getpid()}.{ZONE}" for i in range(20)]
    hosts = list(zip(names, pki.fleet(tmp_path / "certs", names, ISSUER), strict=True))
    config = write_config(tmp_path / "fleet.toml", bind, hosts, state=tmp_path / "state")
    bind.set_notify(False)
    try:
        process = subprocess.Popen([sys.executable, "-m", "tlsa_manager", "--config", str(config), "sync"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 60
        while not all(served(bind, n)[0] for n in (names[0], names[-1])) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGKILL)  # the UPDATE is in, the secondary lags, the run was polling
        process.communicate(timeout=10)
        assert all(len(served(bind, n)[0]) == 4 and not served(bind, n)[1] for n in names)
    finally:
        bind.set_notify(True)
    bind.secondary.rndc(bind.keys, "refresh", ZONE)
    before = bind.primary.stats(bind.keys).get("UPDATE", 0)
    again = tlsa("--config", str(config), "--json", "sync")
    assert again.returncode == 0, again.stderr
    assert all(h["applied"] == [] for h in json.loads(again.stdout)["hosts"])  # found written, not sent again
    assert bind.primary.stats(bind.keys).get("UPDATE", 0) == before
    deadline = time.monotonic() + 20  # the refreshed secondary catches up by itself
    while not all(served(bind, n)[1] for n in names) and time.monotonic() < deadline:
        time.sleep(0.2)
    for name, cert in hosts:
        primary, secondary = served(bind, name)
        assert primary == secondary and len(primary) == 4 and leaf_311(cert, tmp_path) in primary, name


def test_a_server_without_tcp_is_observed_over_udp(bind: Bind) -> None:
    """Some authoritative servers sit behind firewalls that drop TCP: the pipelined TCP
    read finds no connection, and the view asks over UDP instead (here a UDP-only relay
    in front of the real primary; nothing listens for TCP on its port)."""
    import socket
    import threading

    import dns.name

    from tlsa_manager.dnsview import DnsView
    from tlsa_manager.endpoints import Endpoint
    from tlsa_manager.records import Tlsa

    from conftest import nsupdate_add
    from servers import free_port

    owner = owner_name(f"udp-{os.getpid()}.{ZONE}")
    record = Tlsa.from_text("3 1 1 " + "ab" * 32)
    nsupdate_add(bind, owner, record.to_text())
    port = free_port()
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay.bind(("127.0.0.1", port))
    relay.settimeout(0.2)
    stop = threading.Event()

    def forward() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
            upstream.settimeout(2)
            while not stop.is_set():
                try:
                    data, client = relay.recvfrom(65535)
                except TimeoutError:
                    continue
                upstream.sendto(data, ("127.0.0.1", bind.primary.port))
                relay.sendto(upstream.recvfrom(65535)[0], client)

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    try:
        others = [dns.name.from_text(f"_25._tcp.none{i}-{os.getpid()}.{ZONE}") for i in range(3)]
        views = DnsView([Endpoint("udp-only", "127.0.0.1", port)], timeout=2).observe([owner, *others])
    finally:
        stop.set()
        thread.join(5)
        relay.close()
    assert views[owner][0].records == frozenset({record}) and views[owner][0].error is None
    assert all(views[o][0].records == frozenset() for o in others)


def test_what_was_written_and_served_is_not_read_again(tmp_path: Path, bind: Bind) -> None:
    """After the UPDATE and the wait, every server serves each owner's new RRset, and an
    UPDATE applies whole under its prerequisites: the re-plan takes the provider's copy
    from that instead of asking the primary for all 60 owners again (issue 14: the
    primary answers read + observation + wait, not a fourth round).  What the run then
    recorded is right: the next run has nothing to write and sees no difference."""
    names = [f"nr{i}-{os.getpid()}.{ZONE}" for i in range(60)]
    hosts = list(zip(names, pki.fleet(tmp_path / "certs", names, ISSUER), strict=True))
    config = write_config(tmp_path / "fleet.toml", bind, hosts, state=tmp_path / "state")
    before = bind.primary.stats(bind.keys)
    first = tlsa("--config", str(config), "sync")
    after = bind.primary.stats(bind.keys)
    assert first.returncode == 0, first.stderr
    to_primary = after.get("TLSA", 0) - before.get("TLSA", 0)
    # read 60 + observe 60 + 60 read as the UPDATE committed (earlyviews.py): the wait
    # then asks the primary nothing (no poll of the last owner, no full poll), only the
    # secondary
    assert to_primary == 3 * 60, to_primary
    for name, _cert in hosts:
        primary, secondary = served(bind, name)
        assert primary == secondary and len(primary) == 4, name
    again = tlsa("--config", str(config), "--json", "sync")
    assert again.returncode == 0, again.stderr
    assert all(h["applied"] == [] and not h["error"] for h in json.loads(again.stdout)["hosts"])
