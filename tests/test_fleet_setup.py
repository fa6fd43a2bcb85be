"""A fleet's configuration and opening its hosts: the shortcuts of issue 14 change nothing.

A fleet's hosts share their settings but for the name and files, so the configuration
checks a shared set once, and the hosts of one server list and parent domain ask for
the negative TTL once.  Each is held here to the plain, one-host-at-a-time result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tlsa_manager.config import HostSpec, config_from_dict
from tlsa_manager.errors import ConfigError

from servers import ZONE, Bind

ABSENT = object()
#: per key, values a host may have: the usual, the same in another type, and wrong ones
CHOICES: dict[str, list[Any]] = {
    "ttl": [ABSENT, 60, 60, 60.0, 1, True, "60", 0],
    "cert": [ABSENT, "a.pem", "a.pem", "/abs/b.pem", "", 5, ["x.pem", "y.pem"], []],
    "key": [ABSENT, ABSENT, "k.pem", "", 7],
    "next_keys": [ABSENT, ABSENT, ["n.pem"], "n.pem", [3]],
    "staged_dir": [ABSENT, ABSENT, "staged", 5],
    "nameservers": [ABSENT, ["127.0.0.1:53"], ["127.0.0.1:53"], [""], "127.0.0.1"],
    "records": [ABSENT, ABSENT, ["3 1 1"], ["3 1 1", "3 1 1"]],
    "probe": [ABSENT, ABSENT, "127.0.0.1", "bad host!"],
    "slack": [ABSENT, 300, 300.0, "5m", -1],
}
NAMES = ["mx{}.example.com", "MX{}.Example.COM.", "192.0.2.{}", "-mx{}-.example.com", "mx{}.example.com"]
PROVIDERS = {"z": {"type": "zonefile", "zone_file": "/nonexistent/db.example.com"}}


def host_tables() -> Any:
    """Hosts as fleets have them: one table, and each host differs in a key or two."""
    def table(keys: list[str]) -> Any:
        return st.fixed_dictionaries({k: st.sampled_from(CHOICES[k]) for k in keys}).map(
            lambda t: {k: v for k, v in t.items() if v is not ABSENT}
        )

    base = table(list(CHOICES))
    change = st.lists(st.sampled_from(list(CHOICES)), max_size=2, unique=True).flatmap(table)
    hosts = st.lists(st.tuples(st.sampled_from(NAMES), change), min_size=1, max_size=8)
    return st.tuples(base, hosts).map(lambda b: [(name, {**b[0], **more}) for name, more in b[1]])


def alone(name: str, table: dict[str, Any], defaults: dict[str, Any]) -> HostSpec | str:
    """The host in a configuration of its own: its spec, or the one line of its error."""
    doc = {"providers": PROVIDERS, "defaults": defaults, "hosts": {name: table}}
    try:
        (spec,) = config_from_dict(doc, Path("/etc/tlsa"), "test").hosts.values()
    except ConfigError as exc:
        return exc.one_line()
    return spec


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(host_tables(), st.sampled_from([{}, {"ttl": 300}, {"cert": "d.pem"}, {"ttl": True}, {"key": "k.pem"}]))
@example([(NAMES[0], {"cert": "a.pem", "ttl": ttl}) for ttl in (60, 60.0)], {})
@example([(NAMES[0], {"cert": "a.pem", "ttl": ttl}) for ttl in (1, True)], {})
@example([(NAMES[0], {"cert": "a.pem"}), (NAMES[0], {"cert": 5}), (NAMES[2], {"cert": "b.pem"})], {})
@example([(NAMES[0], {"cert": "a.pem", "staged_dir": "staged"})] * 2, {})
def test_a_fleet_gives_each_host_what_it_gets_alone(hosts: list[tuple[str, dict[str, Any]]],
                                                    defaults: dict[str, Any]) -> None:
    """Every host of a fleet has the spec it has alone, and the first host that is wrong
    gives the error it gives alone (the shared settings are checked once per distinct
    set: 60, 60.0 and true are not one set)."""
    named = {pattern.format(i): table for i, (pattern, table) in enumerate(hosts)}
    doc = {"providers": PROVIDERS, "defaults": defaults, "hosts": named}
    each = [alone(name, table, defaults) for name, table in named.items()]
    errors = [e for e in each if isinstance(e, str)]
    try:
        config = config_from_dict(doc, Path("/etc/tlsa"), "test")
    except ConfigError as exc:
        if not errors and "both stage" in exc.one_line():  # a rule across hosts: one staged file for two
            assert len({(s.staged_dir, c.name) for s in each if isinstance(s, HostSpec) and s.staged_dir for c in s.certs}) \
                < sum(len(s.certs) for s in each if isinstance(s, HostSpec) and s.staged_dir)
            return
        assert errors and exc.one_line() == errors[0]
        return
    assert not errors
    assert list(config.hosts.values()) == each
    assert [s.policy for s in config.hosts.values()] == [s.policy for s in each if not isinstance(s, str)]


#: TOML 1.0 documents, TOML 1.1 additions (refused by tomllib, so refused here) and mistakes
def test_hosts_share_a_negative_ttl_only_where_it_is_the_same(tmp_path: Path, bind: Bind) -> None:
    """The hosts of one server list and parent domain ask the SOA once; a host with a
    negative_ttl of its own, another server list or another parent domain gets its own
    value, the one it gets when it is opened alone."""
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.config import load_config
    from tlsa_manager.runner import open_hosts

    primary, secondary = bind.primary.endpoint, bind.secondary.endpoint
    hosts = {
        f"a.{ZONE}": f'nameservers = ["{primary}", "{secondary}"]',
        f"b.{ZONE}": f'nameservers = ["{primary}", "{secondary}"]\nnegative_ttl = 120',
        f"c.{ZONE}": f'nameservers = ["{primary}", "{secondary}"]',
        "mx.elsewhere.test": f'nameservers = ["{primary}", "{secondary}"]',  # not BIND's zone
        f"d.{ZONE}": f'nameservers = ["{primary}"]',
        f"e.{ZONE}": 'nameservers = ["127.0.0.1:9"]',  # nobody answers
    }
    provider = f'[providers.p]\ntype = "rfc2136"\nserver = "{primary}"\ntsig_key_file = "{bind.key_file}"\n'

    def config(names: list[str]) -> Path:
        path = tmp_path / f"{len(names)}.toml"
        path.write_text(provider + "".join(f'[hosts."{n}"]\ncert = "c.pem"\n{hosts[n]}\n' for n in names))
        return path

    catalog = load_catalog(tmp_path / "state")
    fleet = {run.spec.name: run.settings.negative_ttl
             for run in open_hosts(load_config(config(list(hosts))), [], True, catalog)}
    each = {name: open_hosts(load_config(config([name])), [], True, catalog)[0].settings.negative_ttl
            for name in hosts}
    assert fleet == each
    assert fleet[f"a.{ZONE}"] == fleet[f"c.{ZONE}"] == fleet[f"d.{ZONE}"] == 30  # min(SOA TTL 60, minimum 30)
    assert fleet[f"b.{ZONE}"] == 120
    assert fleet["mx.elsewhere.test"] == fleet[f"e.{ZONE}"] == 3600  # no SOA answer: the conservative default


def test_a_fleet_shares_what_its_hosts_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hosts with the same settings share one policy and one parsed server list, and a
    run reads the installed providers' entry points once (not once for the secret check
    and again per provider); a host that differs gets its own, equal to what it gets
    alone."""
    import importlib.metadata

    from tlsa_manager import registry
    from tlsa_manager.catalog import load as load_catalog
    from tlsa_manager.config import load_config
    from tlsa_manager.policy import HostPolicy
    from tlsa_manager.runner import open_hosts

    scans: list[str] = []

    def counted(group: str) -> importlib.metadata.EntryPoints:
        scans.append(group)
        return importlib.metadata.entry_points(group=group)

    monkeypatch.setattr(registry, "entry_points", counted)
    monkeypatch.setattr(registry, "_SCANNED", [], raising=False)
    servers = 'nameservers = ["127.0.0.1:9", "[::1]:9"]\nnegative_ttl = 60\ncert = "c.pem"\n'  # nothing asked
    path = tmp_path / "fleet.toml"
    path.write_text(
        "".join(f'[providers.{p}]\ntype = "zonefile"\nzone_file = "db.{p}"\n' for p in ("one", "two"))
        + "".join(f'[hosts."{h}.example.com"]\nprovider = "one"\n{servers}' for h in ("a", "b", "c"))
        + f'[hosts."d.example.com"]\nprovider = "one"\nbudget = 6\n{servers}'
        + f'[hosts."e.example.org"]\nprovider = "two"\n{servers}'
    )
    runs = {r.spec.name: r for r in open_hosts(load_config(path), [], True, load_catalog(tmp_path / "s"))}
    assert len(scans) == 1
    a, b, c, d = (runs[f"{h}.example.com"] for h in "abcd")
    assert a.settings.policy is b.settings.policy is c.settings.policy == HostPolicy()
    assert d.settings.policy == HostPolicy(budget=6) and d.spec.policy is d.settings.policy
    assert a.ports.endpoints()[0] is b.ports.endpoints()[0] is runs["e.example.org"].ports.endpoints()[0]
    assert [str(e) for e in a.ports.endpoints()] == ["127.0.0.1:9", "[::1]:9"]
    assert [(e.address, e.port) for e in d.ports.endpoints()] == [("127.0.0.1", 9), ("::1", 9)]


def test_a_provider_installed_while_running_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan is kept only while the import path and its folders are unchanged: a
    distribution added to a folder already on the path is found (as importlib.metadata
    finds it)."""
    from tlsa_manager import registry

    monkeypatch.syspath_prepend(str(tmp_path))
    assert "later" not in registry.available()
    dist = tmp_path / "later_provider-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: later-provider\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[tlsa_manager.providers]\nlater = later_provider:Later\n")
    stamp = tmp_path.stat().st_mtime_ns + 1_000_000_000  # a coarse clock may not have moved
    os.utime(tmp_path, ns=(stamp, stamp))
    assert registry.available()["later"].value == "later_provider:Later"


def test_cert_and_certs_both_in_defaults_names_defaults() -> None:
    """Both given in [defaults]: the error named the host's table, where neither is
    written, so the user looked in the wrong place."""
    doc = {"providers": PROVIDERS, "defaults": {"cert": "a.pem", "certs": ["b.pem"]},
           "hosts": {"mx1.example.com": {"ttl": 300}}}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(doc, Path("/etc/tlsa"), "test")
    assert caught.value.message == "defaults: cert and certs are both given"
