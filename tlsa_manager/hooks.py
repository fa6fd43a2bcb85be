"""Post-renewal hooks: certbot, acme.sh, lego, dehydrated and a generic one.

Each ACME client hands over the renewed key and chain its own way; this module turns
that into one :class:`Renewal` (domains, key file, full chain file) and stages it for
every configured host it covers: ``STAGED_DIR/<live file name>``, key and chain in one
file (what Postfix's ``smtpd_tls_chain_files`` reads), written atomically, mode 0640.
The key must match the certificate, or nothing is staged (H24).  A certificate issued
from a CSR made with a next key (``tlsa-manager key csr``; certbot/lego/dehydrated
``--csr``/``--signcsr``) comes without a key file: its key is looked up among the
host's next keys, so that renewal goes live at once (docs/key-rollover.md).  Publishing and
deploying is then the ordinary ``sync``: deploy at once only when the new chain is
already covered by records whose gate has passed (key reused, issuer pre-published).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from tlsa_manager.catalog import Catalog
from tlsa_manager.certs import Chain, dns_names, key_type, load_chain, load_material
from tlsa_manager.config import Config, HostSpec
from tlsa_manager.errors import ConfigError, HazardError, InputError, TlsaManagerError, UsageError
from tlsa_manager.fsutil import atomic_write, make_dir
from tlsa_manager.hazards import TA_NOT_SENT
from tlsa_manager.hostfiles import expired_before_live, new_key_beside_key_file
from tlsa_manager.nextkey import find_key
from tlsa_manager.records import spki_der

CLIENTS = ("certbot", "acme.sh", "lego", "dehydrated", "generic")
#: clients whose one hook runs for every certificate they renew: certbot's
#: renewal-hooks/deploy/ and cli.ini deploy_hook run for every lineage, dehydrated calls
#: deploy_cert for every line of domains.txt.  A web server's certificate there is none of
#: the hook's business (exit 0); acme.sh's --reloadcmd, lego's --renew-hook and
#: ``generic --host`` are given for one certificate, so one that covers no configured
#: host is a mistake (exit 2).  docs/hooks.md, "Certificates of other services".
EVERY_CERTIFICATE = ("certbot", "dehydrated")


class CoversNoHost(ConfigError):
    """The renewed certificate covers no configured host, or (a hook that runs for every
    certificate) one only by a wildcard while that host serves a certificate of its own."""


@dataclass(frozen=True)
class Renewal:
    domains: tuple[str, ...]
    key: Path | None
    fullchain: Path
    #: the client named only its main domain (acme.sh, lego, dehydrated): the hosts are
    #: found among the certificate's own names too
    main_domain_only: bool = False
    #: the client's hook runs for every certificate it renews (:data:`EVERY_CERTIFICATE`)
    every_certificate: bool = False


def _env(env: Mapping[str, str], name: str, client: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise UsageError(
            f"hook {client}: {name} is not set",
            f"run this as {client}'s deploy hook (see docs/hooks.md), or use 'hook generic'",
        )
    return value


def renewal_from(
    client: str,
    env: Mapping[str, str],
    args: Sequence[str],
    cert: str | None = None,
    key: str | None = None,
    host: str | None = None,
) -> Renewal:
    """What the ACME client renewed, from its environment or arguments."""
    if client == "certbot":
        lineage = Path(_env(env, "RENEWED_LINEAGE", client))
        return Renewal(
            tuple(_env(env, "RENEWED_DOMAINS", client).split()),
            lineage / "privkey.pem",
            lineage / "fullchain.pem",
            every_certificate=client in EVERY_CERTIFICATE,
        )
    if client == "acme.sh":
        fullchain = env.get("CERT_FULLCHAIN_PATH") or _env(env, "CERT_PATH", client)
        return Renewal(
            (_env(env, "Le_Domain", client),), Path(_env(env, "CERT_KEY_PATH", client)), Path(fullchain), True
        )
    if client == "lego":
        return Renewal(
            (_env(env, "LEGO_CERT_DOMAIN", client),),
            Path(_env(env, "LEGO_CERT_KEY_PATH", client)),
            Path(_env(env, "LEGO_CERT_PATH", client)),
            True,
        )
    if client == "dehydrated":
        # deploy_cert DOMAIN KEYFILE CERTFILE FULLCHAINFILE CHAINFILE TIMESTAMP
        if len(args) < 4 or (args[0] == "deploy_cert" and len(args) < 5):
            raise UsageError(
                "hook dehydrated: expected deploy_cert DOMAIN KEYFILE CERTFILE FULLCHAINFILE ...",
                "call it from dehydrated's hook script for deploy_cert",
            )
        rest = list(args[1:] if args[0] == "deploy_cert" else args)
        return Renewal((rest[0],), Path(rest[1]), Path(rest[3]), True, client in EVERY_CERTIFICATE)
    if client == "generic":
        if not (cert and host):
            raise UsageError(
                "hook generic needs --cert FULLCHAIN --host HOST (and --key KEY)",
                "leave out --key only for a certificate issued with a next key",
            )
        return Renewal((host,), Path(key) if key else None, Path(cert))
    raise UsageError(f"unknown ACME client {client!r}", f"use one of: {', '.join(CLIENTS)}")


def hosts_for(config: Config, renewal: Renewal) -> list[HostSpec]:
    """Configured hosts whose name the renewed certificate covers (``*.example.com``
    covers ``mx.example.com``, one label deep, as RFC 6125 §6.4.3 matches it)."""
    names = {d.rstrip(".").lower() for d in (*renewal.domains, *_certificate_names(renewal))}
    wild = {n[2:] for n in names if n.startswith("*.")}
    found = [spec for name, spec in sorted(config.hosts.items()) if name in names]
    # A host covered by the wildcard alone is staged only if its live certificate is
    # that wildcard's too: certbot runs a deploy hook for every lineage, and a web
    # server's *.example.com must not replace the MX's own certificate and key.
    only_wild = [
        spec
        for name, spec in sorted(config.hosts.items())
        if name not in names and name.partition(".")[2] in wild
    ]
    found += [s for s in only_wild if f"*.{s.name.partition('.')[2]}" in _live_names(s)]
    if not found:
        if only_wild:  # a hook that runs for every certificate: another service's wildcard
            raise (CoversNoHost if renewal.every_certificate else ConfigError)(
                f"{only_wild[0].name} is covered by the renewed wildcard only, and its live "
                "certificate is not that wildcard's: not staged (another lineage's certificate "
                "would replace the MX's own)",
                "renew the MX's own certificate, or deploy the wildcard once by hand (docs/hooks.md)",
            )
        raise CoversNoHost(
            f"no configured host among the renewed names {', '.join(sorted(names))}",
            'add [hosts."<mx name>"] to the configuration, or check the certificate\'s names',
        )
    return found


def _live_names(spec: HostSpec) -> tuple[str, ...]:
    """The DNS names of the host's live certificate (none when it does not load)."""
    try:
        leaf = load_chain(spec.certs[0]).leaf if spec.certs else None
    except (TlsaManagerError, OSError):
        return ()
    return tuple(dns_names(leaf)) if leaf is not None else ()


def _certificate_names(renewal: Renewal) -> tuple[str, ...]:
    """The DNS names of the renewed certificate, when the client named its main domain only."""
    if not renewal.main_domain_only:
        return ()
    leaf = load_chain(renewal.fullchain).leaf
    return tuple(dns_names(leaf)) if leaf is not None else ()


def with_known_key(renewal: Renewal, next_keys: Sequence[Path]) -> Renewal:
    """The renewal with the key that belongs to its certificate: the client's key file if it
    matches, else the next key the certificate was issued for (CSR mode: the client has no
    key file, or a stale one from an earlier run)."""
    mismatch: InputError | None = None
    if renewal.key is None and load_material(renewal.fullchain).private_keys:
        return replace(renewal, key=renewal.fullchain)  # one combined file: key, leaf, chain
    if renewal.key is not None and renewal.key.exists():
        try:
            load_chain(renewal.fullchain, renewal.key)
            return renewal
        except InputError as exc:
            if "does not match" not in exc.message:
                raise
            mismatch = exc
    chain = load_chain(renewal.fullchain)
    if chain.leaf is None or chain.key is None:
        raise InputError(
            f"{renewal.fullchain}: no server certificate in it", "point the hook at the full chain"
        )
    found = find_key(next_keys, spki_der(chain.key))
    if found is not None:
        return replace(renewal, key=found)
    if mismatch is not None:
        raise mismatch
    raise InputError(
        f"{renewal.fullchain}: its private key is neither {renewal.key or '(none given)'} nor a next key",
        "give the key file (--key), or issue from a CSR of 'tlsa-manager key csr HOST'",
    )


def stage(spec: HostSpec, renewal: Renewal, catalog: Catalog, next_keys: Sequence[Path] = ()) -> Path | None:
    """Write key + chain to the host's staged folder, under the live file's name; None
    when the live file already holds this very certificate and key (a hook run again,
    or pointed at the live file): staging it would only make a deploy wait for nothing.

    A file with the server certificate only (certbot's ``cert.pem``) is completed with
    its issuer from the catalog: served alone it would match no "2 1 1" record (H9),
    and the planner would withdraw the issuer records for it."""
    if spec.staged_dir is None:
        raise ConfigError(
            f"host {spec.name} has no staged_dir", 'add staged_dir = "/etc/tlsa-manager/staged/..."'
        )
    # A next key's file is retired once a hook staged its certificate: run again (as
    # docs/hooks.md says after a failure), the key is found in the staged or live file.
    own = [spec.staged_dir / p.name for p in spec.certs] + list(spec.certs)
    renewal = with_known_key(renewal, [*next_keys, *own])
    assert renewal.key is not None
    chain = load_chain(renewal.fullchain, renewal.key)  # raises if the key does not match
    if chain.leaf is None or chain.key is None:
        raise InputError(
            f"{renewal.fullchain}: no server certificate in it", "point the hook at the full chain"
        )
    kind = key_type(chain.key)
    target_name = _live_name(spec, kind)
    beside = new_key_beside_key_file(spec, target_name, renewal.fullchain, renewal.key)
    if beside is not None:
        raise ConfigError(f"{renewal.fullchain}: nothing staged for {spec.name}: {beside}", "docs/hooks.md")
    make_dir(spec.staged_dir, 0o750, what="staged_dir")
    target = spec.staged_dir / target_name
    issuer = _missing_issuer(chain, renewal, catalog)  # a hazard first: it is said either way
    live = next((p for p in spec.certs if p.name == target_name), None)
    if _already_live(live, chain):  # nothing written: a live link stays a link
        return None
    _refuse_live_target(spec, target)
    _refuse_expired(live, chain, renewal.fullchain)
    atomic_write(target, _chain_file(renewal.key, chain) + issuer, mode=0o640)
    _group_like(target, spec)
    return target


def _refuse_live_target(spec: HostSpec, target: Path) -> None:
    """A staged_dir that is a live file's folder by another path (a link to it): the
    renewal would be written over the live file, live before its records are served.
    A live file that is a link: the deploy's rename would replace the link."""
    for live in spec.certs:
        if live.name == target.name and live.is_symlink():
            raise ConfigError(
                f"{live} is a symbolic link: a deploy replaces the live file by rename, so the link "
                "would become a file (certbot's live/ folder then refuses every later renewal)",
                "point cert at a file of its own that the MTA serves (docs/hooks.md, first install)",
            )
        if os.path.exists(target) and os.path.exists(live) and os.path.samefile(target, live):
            raise ConfigError(
                f'hosts."{spec.name}".staged_dir {spec.staged_dir} is the folder of the live file {live}: '
                "a renewal would be written over the live file before its records are served",
                'give staged_dir a folder of its own, e.g. staged_dir = "/etc/tlsa-manager/staged/HOST"',
            )


def _chain_file(key_file: Path, chain: Chain) -> bytes:
    """One private key, then the leaf, then its CA certificates, all PEM: what Postfix's
    ``smtpd_tls_chain_files`` loads.  Built from what was parsed, never by pasting the
    client's files together: a chain file that also holds the key, a DER key, or a CA
    certificate before the leaf would make smtpd log "key ... does not match next
    certificate" and disable TLS, and every DANE sender would defer mail."""
    keys = load_material(key_file).private_keys
    if not keys:
        raise InputError(
            f"{key_file}: holds no private key (the MTA needs it to serve the certificate)",
            "give the private key file (--key privkey.pem)",
        )
    assert chain.leaf is not None
    key_pem = keys[0].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem + b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (chain.leaf, *chain.cas))


def _refuse_expired(live: Path | None, chain: Chain, source: Path) -> None:
    """An expired certificate that would replace a live one lasting longer is not staged."""
    why = expired_before_live(chain.leaf, live, time.time())
    if why:
        hint = "give the renewed certificate (the ACME client's newest file)"
        raise InputError(f"{source}: {why}; nothing staged", hint)


def _already_live(live: Path | None, chain: Chain) -> bool:
    """Whether the live file holds the same server certificate and key as ``chain``."""
    if live is None or chain.leaf is None:
        return False
    try:
        current = load_chain(live)
    except InputError:  # missing or unreadable: the renewal is needed
        return False
    return current.leaf is not None and current.leaf == chain.leaf and current.key == chain.key


def _missing_issuer(chain: Chain, renewal: Renewal, catalog: Catalog) -> bytes:
    """The PEM of the leaf's issuer when the file carries no CA certificate (else b"").

    Resolved from the catalog by the leaf's issuer name, AKI and signature.  A leaf-only
    file whose issuer the catalog cannot vouch for is refused as a hazard: staging it
    would deploy a chain no "2 1 1" record can match."""
    if chain.cas or chain.leaf is None:
        return b""
    found = catalog.issuing_cert(chain.leaf)
    if found is not None:
        return found[1].pem.rstrip(b"\n") + b"\n"
    issuer = chain.leaf.issuer.rfc4514_string()
    named = any(c.certificate.subject == chain.leaf.issuer for i in catalog.issuers for c in i.certs)
    why = (
        f"it names {issuer} as its issuer, but no catalog certificate of that name signed it"
        if named
        else f"its issuer {issuer} is not in the issuer catalog"
    )
    raise HazardError(
        f"[{TA_NOT_SENT.code}] {renewal.fullchain} holds the server certificate without its issuer, "
        f"and {why}; "
        'nothing staged (served alone, it matches no "2 1 1" record)',
        "give the full chain (leaf, then intermediates), e.g. certbot's fullchain.pem",
    )


def _live_name(spec: HostSpec, kind: str) -> str:
    """The live file a chain of this key type replaces (ecdsa.pem next to rsa.pem)."""
    if len(spec.certs) == 1:
        return spec.certs[0].name
    for path in spec.certs:
        try:
            live = load_chain(path)
        except InputError:
            continue
        if live.key is not None and key_type(live.key) == kind:
            return path.name
    raise ConfigError(
        f"host {spec.name} serves no {kind.upper()} chain to replace",
        f"add the {kind} chain file to certs = [...]",
    )


def _group_like(target: Path, spec: HostSpec) -> None:
    """Give the staged file the live file's group, so the MTA can read it once deployed."""
    if not spec.certs:
        return
    try:
        gid = spec.certs[0].stat().st_gid
        os.chown(target, -1, gid)
    except OSError:
        pass
