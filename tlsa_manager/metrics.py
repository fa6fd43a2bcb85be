"""Prometheus metrics: is DANE working, and will it keep working?

One collection reads what the configuration and the state directory know (staged
chains and when each may go live, leaf expiry, last successful sync, the catalog's
age, the planner's hazards, all offline) and, unless told not to, runs the live
``check`` for every configured host and port (verdict, endpoints verified, hazards).
The same metrics are written as a node_exporter textfile (``tlsa-manager metrics``)
or served on ``/metrics`` (``tlsa-manager exporter``).

Formatting and serving use the official ``prometheus-client`` (optional extra
``metrics``), imported only by :func:`render` and :func:`serve`: nothing else in the
package pays for it.  No printing here.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlsa_manager.errors import TlsaManagerError, UsageError

log = logging.getLogger(__name__)

VERDICTS = ("pass", "fail", "dane not in force", "unknown")
SEVERITIES = ("fatal", "risk", "info")


@dataclass
class Metric:
    """One gauge family: name, help text, label names and (label values, value) samples."""

    name: str
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    def add(self, value: float, *labels: str) -> None:
        self.samples.append((labels, float(value)))


#: every metric: help text and label names (docs/monitoring.md lists the same)
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "tlsa_manager_dane_verdict": (
        "1 for the verdict of the last live check of this host and port (pass, fail, "
        "dane not in force, unknown), 0 for the others",
        ("host", "port", "verdict"),
    ),
    "tlsa_manager_endpoints": (
        "Address and key-algorithm endpoints the last check reached or tried",
        ("host", "port"),
    ),
    "tlsa_manager_endpoints_verified": (
        "Endpoints whose chain the TLSA records authenticate (DANE pass)",
        ("host", "port"),
    ),
    "tlsa_manager_check_hazards": (
        "Hazards the last live check found, by severity",
        ("host", "port", "severity"),
    ),
    "tlsa_manager_staged_chain_live_in_seconds": (
        "Seconds until this staged chain may go live (0: the next sync deploys it); "
        "absent while the time is not yet known",
        ("host", "chain"),
    ),
    "tlsa_manager_staged_chain_ready": (
        "1 when the staged chain may go live now, 0 while its gate is closed",
        ("host", "chain"),
    ),
    "tlsa_manager_plan_hazards": (
        "Hazards the planner sees from the last observation (offline), by severity",
        ("host", "severity"),
    ),
    "tlsa_manager_leaf_expiry_timestamp_seconds": (
        "When the live certificate's leaf expires (Unix time)",
        ("host", "chain", "file"),
    ),
    "tlsa_manager_last_sync_success_timestamp_seconds": (
        "When the last sync of this host finished without error (Unix time; 0: never)",
        ("host",),
    ),
    "tlsa_manager_collect_errors": (
        "Things this collection could not read (a certificate file, the ledger); see the log",
        ("host",),
    ),
    "tlsa_manager_catalog_age_seconds": (
        "Seconds since the issuer catalog in use was current (refresh: tlsa-manager catalog update)",
        ("origin",),
    ),
    "tlsa_manager_collected_timestamp_seconds": ("When these metrics were collected (Unix time)", ()),
    "tlsa_manager_collect_duration_seconds": ("How long collecting these metrics took", ()),
    "tlsa_manager_collect_failed": ("1: the last collection failed; see the log", ()),
}


def _new(name: str) -> Metric:
    text, labels = METRICS[name]
    return Metric(name, text, labels)


def check_metrics(results: Sequence[tuple[str, int, Any]]) -> list[Metric]:
    """Per host and port: the DANE verdict, endpoints (verified), hazards by severity (pure).

    ``results`` holds (host, port, CheckResult).
    """
    verdict = _new("tlsa_manager_dane_verdict")
    endpoints = _new("tlsa_manager_endpoints")
    verified = _new("tlsa_manager_endpoints_verified")
    hazards = _new("tlsa_manager_check_hazards")
    for host, port, result in results:
        labels = (host, str(port))
        for name in VERDICTS:
            verdict.add(1.0 if result.verdict == name else 0.0, *labels, name)
        found = [e for h in result.hosts for e in h.endpoints]
        endpoints.add(len(found), *labels)
        verified.add(sum(1 for e in found if e.verdict == "pass"), *labels)
        for severity in SEVERITIES:
            hazards.add(sum(1 for h in result.all_hazards if str(h.severity) == severity), *labels, severity)
    return [verdict, endpoints, verified, hazards]


def state_metrics(
    config: Any, state_dir: Path, catalog: Any, hosts: Sequence[str], now: float
) -> list[Metric]:
    """What the configuration and the state directory know, without touching the network."""
    from tlsa_manager import lastsync
    from tlsa_manager.certs import load_chain
    from tlsa_manager.freshness import catalog_age
    from tlsa_manager.runner import status_plans

    specs = config.select(list(hosts), not hosts)
    live_in = _new("tlsa_manager_staged_chain_live_in_seconds")
    ready = _new("tlsa_manager_staged_chain_ready")
    plan_hazards = _new("tlsa_manager_plan_hazards")
    expiry = _new("tlsa_manager_leaf_expiry_timestamp_seconds")
    synced = _new("tlsa_manager_last_sync_success_timestamp_seconds")
    errors = _new("tlsa_manager_collect_errors")
    plans = status_plans(config, [s.name for s in specs], catalog, state_dir, now)
    last = lastsync.load(state_dir)
    for spec, plan in zip(specs, plans, strict=True):
        failures = 0
        for gate in plan.gates:
            ready.add(1.0 if gate.ready else 0.0, spec.name, gate.chain)
            if gate.ready:
                live_in.add(0.0, spec.name, gate.chain)
            elif gate.opens_at is not None:
                live_in.add(max(0.0, gate.opens_at - now), spec.name, gate.chain)
        for severity in SEVERITIES:
            plan_hazards.add(sum(1 for h in plan.hazards if str(h.severity) == severity), spec.name, severity)
        for path in spec.certs:
            try:
                chain = load_chain(Path(path))
            except TlsaManagerError as exc:
                log.warning("%s: %s", spec.name, exc.one_line())
                failures += 1
                continue
            if chain.leaf is not None:
                expiry.add(chain.leaf.not_valid_after_utc.timestamp(), spec.name, chain.key_type, str(path))
        synced.add(last.get(spec.name, 0.0), spec.name)
        errors.add(failures, spec.name)
    age, origin = catalog_age(state_dir, dt.datetime.fromtimestamp(now, dt.UTC))
    catalog_metric = _new("tlsa_manager_catalog_age_seconds")
    catalog_metric.add(age, origin)
    return [live_in, ready, plan_hazards, expiry, synced, errors, catalog_metric]


def run_checks(
    config: Any,
    catalog: Any,
    hosts: Sequence[str],
    resolver: str | None,
    timeout: float,
) -> list[tuple[str, int, Any]]:
    """The live check of every configured host on each of its ports (as `check` would)."""
    from tlsa_manager.check import Checker, CheckResult, Dane, HostCheck
    from tlsa_manager.resolve import ValidatingResolver

    out: list[tuple[str, int, Any]] = []
    validating = ValidatingResolver(resolver, timeout=timeout)
    for spec in config.select(list(hosts), not hosts):
        for port in spec.ports:
            checker = Checker(
                validating,
                catalog,
                port=port,
                timeout=timeout,
                nameservers=compared_servers(config, spec) or None,
            )
            try:
                result = checker.run(spec.name)
            except TlsaManagerError as exc:
                log.warning("check of %s port %d failed: %s", spec.name, port, exc.one_line())
                failed = HostCheck(spec.name, None, Dane.ERROR, exc.message)
                result = CheckResult(spec.name, "error", [failed], [])
            out.append((spec.name, port, result))
    return out


def compared_servers(config: Any, spec: Any) -> list[Any]:
    """The servers the live check reads the TLSA owner from: the host's ``nameservers``,
    else its provider's (the precedence of the deploy gate, docs/config.md); none: the
    zone's NS names."""
    from tlsa_manager.endpoints import configured

    listed = spec.nameservers or config.providers.get(spec.provider, {}).get("nameservers")
    return configured(list(listed) if listed else None)


def gather(
    config: Any,
    state_dir: Path,
    hosts: Sequence[str] = (),
    *,
    live: bool = True,
    resolver: str | None = None,
    timeout: float = 10.0,
    clock: Callable[[], float] = time.time,
) -> list[Metric]:
    """Everything, once: state metrics, live checks (unless ``live`` is False), timing."""
    from tlsa_manager.catalog import load as load_catalog

    started = clock()
    catalog = load_catalog(state_dir)
    metrics = state_metrics(config, state_dir, catalog, hosts, started)
    if live:
        metrics += check_metrics(run_checks(config, catalog, hosts, resolver, timeout))
    finished = clock()
    stamp = _new("tlsa_manager_collected_timestamp_seconds")
    stamp.add(finished)
    duration = _new("tlsa_manager_collect_duration_seconds")
    duration.add(finished - started)
    return [*metrics, stamp, duration]


class _Collector:
    """A prometheus_client collector over :class:`Metric` lists."""

    def __init__(self, produce: Callable[[], list[Metric]]) -> None:
        self.produce = produce

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        for metric in self.produce():
            family = GaugeMetricFamily(metric.name, metric.help, labels=list(metric.labels))
            for labels, value in metric.samples:
                family.add_metric(list(labels), value)
            yield family


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise UsageError(
            "metrics need the prometheus-client package",
            "pip install 'tlsa-manager[metrics]' (Debian: apt install python3-prometheus-client)",
        ) from None
    return prometheus_client


def render(metrics: list[Metric]) -> bytes:
    """The Prometheus text exposition format (what node_exporter's textfile collector reads)."""
    client = _client()
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(_Collector(lambda: metrics))
    return bytes(client.generate_latest(registry))


class CachedSource:
    """Collect at most once per ``interval`` seconds: a live check takes seconds and
    every Prometheus server scraping would otherwise start one."""

    def __init__(self, produce: Callable[[], list[Metric]], interval: float) -> None:
        self.produce = produce
        self.interval = interval
        self.lock = threading.Lock()
        self.cached: list[Metric] | None = None
        self.at = 0.0

    def __call__(self) -> list[Metric]:
        with self.lock:
            if self.cached is None or time.monotonic() - self.at >= self.interval:
                try:
                    self.cached = self.produce()
                except TlsaManagerError as exc:
                    log.error("collecting metrics failed: %s", exc.one_line())
                    failed = _new("tlsa_manager_collect_failed")
                    failed.add(1)
                    return [failed]
                self.at = time.monotonic()
            return self.cached


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:9469``, ``[::1]:9469`` or ``:9469`` (all addresses)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--listen {text!r} is not ADDRESS:PORT", "e.g. --listen 127.0.0.1:9469")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def serve(listen: str, produce: Callable[[], list[Metric]]) -> tuple[Any, threading.Thread]:
    """Serve ``/metrics`` on ``listen`` in a background thread; returns (server, thread)."""
    client = _client()
    host, port = parse_listen(listen)
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(_Collector(produce))
    try:
        server, thread = client.start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise UsageError(f"cannot listen on {listen} ({exc.strerror})", "pick a free port") from None
    return server, thread
