"""A host's certificate files: the chains the MTA serves, staged and next; the deploy.

- live chains: the files the MTA serves (``cert``/``certs`` in the host's config);
- staged chains: ``STAGED_DIR/<live file name>`` written by a hook (key + chain);
- next keys: ``next_keys`` files and the keys in ``next_dir`` (STATE_DIR/next-keys/HOST,
  see nextkey.py): bare keys, pre-published before any certificate;
- deploy: the staged file replaces the live one by rename, then the reload command,
  then (with ``probe``) a STARTTLS handshake must show the new chain.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tlsa_manager.catalog import Catalog
from tlsa_manager.certs import load_chain, load_material
from tlsa_manager.config import HostSpec
from tlsa_manager.errors import InputError, TlsaManagerError
from tlsa_manager.facts import ChainFacts, facts_from_chain
from tlsa_manager.freshness import facts_with_issuer
from tlsa_manager.fsutil import fsync_dir, move_into_place
from tlsa_manager.plans import chain_identity
from tlsa_manager.ports import HostChains, StagedChanged
from tlsa_manager.records import spki_der

if TYPE_CHECKING:
    from cryptography import x509


def chain_facts(path: Path, label: str, catalog: Catalog, key: Path | None = None) -> ChainFacts:
    """Load a chain file and describe it; a staged chain whose key does not match is a problem."""
    try:
        chain = load_chain(path, key)
    except InputError as exc:
        # A staged key+chain file whose parts disagree is a hazard to report (H24); a
        # separate key given for the live chain that does not match is an input error.
        if "does not match" in exc.message and key is None:
            loaded = load_chain(path)
            facts = facts_from_chain(loaded, label)
            return ChainFacts(facts.label, facts.leaf, facts.key_type, facts.cas, problem=exc.message)
        raise
    if chain.leaf is None and chain.key is None:
        raise InputError(
            f"{path}: holds only CA certificates, no server certificate or key",
            "point cert at the chain the MTA serves (leaf first), e.g. fullchain.pem",
        )
    if chain.leaf is None and not label.startswith("next "):
        # a bare key is a next key; what the MTA serves (live or staged) is a certificate
        raise InputError(
            f"{path}: holds a key but no certificate",
            "point cert (--cert) at the chain the MTA serves, e.g. fullchain.pem; the key goes in key/--key",
        )
    return facts_with_issuer(chain, label, catalog)


def new_key_beside_key_file(
    spec: HostSpec, name: str, chain_path: Path, key_path: Path | None = None
) -> str | None:
    """Why a chain with a new key cannot replace the live file ``name``, or None.  With
    ``key = FILE`` beside the first live chain, a deploy (one rename) would put the new key
    and chain in the chain file while FILE keeps the old key: an MTA reading both pairs
    the new certificate with the old key (and disables TLS)."""
    if spec.key is None or not spec.certs or spec.certs[0].name != name:
        return None
    if os.path.normpath(spec.key) == os.path.normpath(spec.certs[0]):
        return None  # key = the chain file itself: the deploy replaces both at once
    material = load_material(spec.key)
    current = [k.public_key() for k in material.private_keys] + list(material.public_keys)
    new = load_chain(chain_path, key_path).key
    if new is None or any(spki_der(k) == spki_der(new) for k in current):
        return None
    return (
        f"its key is new, and the host's key is a file of its own ({spec.key}) that a deploy "
        "does not replace; put key and chain in one file (cert = that file) and drop key = ..."
    )


def staged_path(spec: HostSpec, key_type: str) -> Path | None:
    return spec.staged_dir / f"{key_type}.pem" if spec.staged_dir else None


class HostFiles:
    """The chain side of a host's ports: its files, the deploy, the probe of the MTA."""

    def __init__(self, spec: HostSpec, catalog: Catalog, notes: list[str]) -> None:
        self.spec = spec
        self.catalog = catalog
        #: shared with the DNS side: what the run's report prints
        self.notes = notes
        self._chain_cache: dict[tuple[object, ...], ChainFacts] = {}
        #: the host's tool-managed next keys (nextkey.key_dir), when a state dir is known
        self.next_dir: Path | None = None
        #: per deployed or confirmed chain, what was checked after the reload, in words
        self.checks: dict[str, str] = {}
        #: why the configured probe could not be asked (``presented``), in words
        self.probe_problem: str | None = None

    def chains(self) -> HostChains:
        live = []
        for index, path in enumerate(self.spec.certs):
            live.append(self._facts(path, f"live {path.name}", self.spec.key if index == 0 else None))
        staged = [self._facts(path, f"staged {path.name}") for path in self.staged_files()]
        next_keys = [self._facts(p, f"next {p.name}") for p in self.next_key_files()]
        return HostChains(tuple(live), tuple(staged), tuple(next_keys))

    def staged_files(self) -> list[Path]:
        """``STAGED_DIR/<live file name>`` for each live file, whatever its suffix.

        A hook stages under the live file's own name, so this is where it is found
        again; any other file there is named in a note rather than silently ignored.
        """
        staged_dir = self.spec.staged_dir
        if staged_dir and staged_dir.exists() and not staged_dir.is_dir():
            raise InputError(f"{staged_dir}: staged_dir is not a directory", "point staged_dir at a folder")
        if staged_dir is None or not staged_dir.is_dir():
            return []
        names = [p.name for p in self.spec.certs]
        found = [staged_dir / n for n in names if (staged_dir / n).is_file()]
        strays = sorted(
            p.name for p in staged_dir.iterdir() if p.name not in names and not p.name.startswith(".")
        )
        if strays:
            note = (
                f"{self.spec.name}: {', '.join(strays)} in {staged_dir} matches no live file "
                f"({', '.join(names) or 'none configured'}) and is ignored; stage under a live file's name"
            )
            if note not in self.notes:
                self.notes.append(note)
        return found

    def next_key_files(self) -> list[Path]:
        """Configured ``next_keys`` and the tool-managed ones (``tlsa-manager key next``)."""
        from tlsa_manager.nextkey import existing

        managed = existing(self.next_dir) if self.next_dir is not None and self.next_dir.is_dir() else []
        return [*self.spec.next_keys, *managed]

    def _facts(self, path: Path, label: str, key: Path | None = None) -> ChainFacts:
        """chain_facts, loaded again only when a file changed (a run plans a host up to
        three times; a deploy renames, which changes the inode)."""
        try:
            stamp = tuple(
                (s.st_ino, s.st_mtime_ns, s.st_ctime_ns, s.st_size)
                for s in map(os.stat, filter(None, (path, key)))
            )
        except OSError:
            return chain_facts(path, label, self.catalog, key)  # says what is wrong with the file
        cache_key = (path, label, key, stamp)
        if cache_key not in self._chain_cache:
            self._chain_cache[cache_key] = chain_facts(path, label, self.catalog, key)
        return self._chain_cache[cache_key]

    def deploy(self, chain: ChainFacts) -> None:
        """Swap the staged file into the live path by rename, then reload the MTA.

        The staged file is pinned by a hard link and re-read through it; only if it
        holds exactly the chain whose gate passed does the pinned inode replace the
        live file.  A file staged meanwhile under the same name is never deployed
        unpublished: it stays staged for the next run's gate.
        """
        source = next((p for p in self.staged_files() if f"staged {p.name}" == chain.label), None)
        if source is None:
            raise StagedChanged(f"{chain.label} vanished from the staged folder", "run the hook again")
        if source.is_symlink() or not source.is_file():
            raise InputError(
                f"{source}: the staged file is a link or not a regular file; it is not deployed",
                "stage the chain with 'tlsa-manager hook' (it writes a regular file)",
            )
        target = next((p for p in self.spec.certs if p.name == source.name), None)
        if target is None:
            raise InputError(
                f"{self.spec.name}: no live file named {source.name} to replace",
                f"add {source.name} to cert/certs in the host's config",
            )
        beside = new_key_beside_key_file(self.spec, target.name, source)
        if beside is not None:
            raise StagedChanged(beside, "stage a renewal that keeps the key")
        if target.is_symlink():  # a rename would replace the link (certbot's live/ folder)
            raise StagedChanged(
                f"{target} is a symbolic link, which a deploy would replace", "point cert at a file"
            )
        pinned = source.with_name(f".{source.name}.deploying")
        with contextlib.suppress(FileNotFoundError):
            pinned.unlink()
        os.link(source, pinned, follow_symlinks=False)
        pinned_inode = os.stat(pinned).st_ino
        try:
            now_staged = chain_facts(pinned, chain.label, self.catalog)
            if chain_identity(now_staged) != chain_identity(chain):
                raise StagedChanged(
                    f"{source} changed after its gate was computed (a newer renewal?)",
                    "the next run publishes and gates the new file",
                )
            why = expired_before_live(load_chain(pinned).leaf, target, time.time())
            if why:
                raise StagedChanged(f"{source}: {why}; remove it, or stage the renewed certificate")
            move_into_place(pinned, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                pinned.unlink()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(source, follow_symlinks=False).st_ino == pinned_inode:
                source.unlink()  # still the file that went live: no longer staged
        fsync_dir(source.parent)
        self._reload(target)
        self.checks[chain.label] = self.verify_presented(chain)

    def confirm(self, chain: ChainFacts) -> None:
        """Re-run the reload and probe of a deploy a killed or failed run left unconfirmed."""
        self._reload(None)
        live = [c for c in self.chains().live if c.key_type == chain.key_type]
        self.checks[chain.label] = self.verify_presented(chain, live)

    def _reload(self, target: Path | None) -> None:
        if not self.spec.reload:
            return
        from tlsa_manager.command import run_command  # subprocess loads only when a reload runs

        what = f"{target} is live" if target else ""
        run_command(self.spec.reload, timeout=120, what=what, hint="reload the MTA by hand")

    def probe_ports(self) -> tuple[int, ...]:
        """``probe_port`` if set, else every port of the host (what senders connect to)."""
        return (self.spec.probe_port,) if self.spec.probe_port else self.spec.ports

    def verify_presented(
        self, chain: ChainFacts, accepted: Sequence[ChainFacts] = (), wait: float = 15.0
    ) -> str:
        """After a deploy, STARTTLS on every probed port must show the new leaf (or one of
        ``accepted``), or the old records stay: the engine stops and the next run tries
        again.  Returns what was checked, in words: without a probe nothing was."""
        if not self.spec.probe:
            if not self.spec.reload:  # say what happened: nothing made the MTA load the file
                return (
                    "not reloaded (no reload command; the MTA loads it when it restarts), "
                    "not verified (no probe configured)"
                )
            return "reloaded, not verified (no probe configured)"
        from tlsa_manager.tlsprobe import handshake, protocol_for

        wanted = {c.leaf.spki_der for c in (chain, *accepted)}
        for port in self.probe_ports():
            deadline = time.monotonic() + wait
            seen = "nothing"
            while True:
                presented = handshake(
                    self.spec.probe, port, self.spec.name, chain.key_type, protocol_for(port)
                )
                if presented.leaf is not None:
                    if spki_der(presented.leaf.public_key()) in wanted:
                        break
                    seen = "the previous certificate"
                elif presented.error:
                    seen = presented.error
                if time.monotonic() >= deadline:
                    raise TlsaManagerError(
                        f"{self.spec.name}: after the deploy, {self.spec.probe}:{port} still "
                        f"presents {seen} for {chain.key_type.upper()}; the old records stay published",
                        "check the MTA's certificate settings and reload it",
                    )
                time.sleep(0.5)
        where = ", ".join(f"{self.spec.probe}:{p}" for p in self.probe_ports())
        return f"verified: {where} presents it"

    def presented(self) -> tuple[ChainFacts, ...] | None:
        """The chain the MTA presents for each live key type on each of the host's own
        ports (``probe``), or None if it cannot be asked."""
        if not self.spec.probe:
            return None
        from tlsa_manager.certs import Chain
        from tlsa_manager.tlsprobe import handshake, protocol_for

        out = []
        for port in self.probe_ports():
            for kind in sorted({c.key_type for c in self.chains().live}):
                seen = handshake(self.spec.probe, port, self.spec.name, kind, protocol_for(port))
                if seen.leaf is None:
                    what = f"is unreachable ({seen.error})" if seen.error else "presents no certificate"
                    self.probe_problem = (
                        f"probe {self.spec.probe}:{port} {what}; "
                        "check probe/probe_port and that the MTA is up"
                    )
                    return None
                sent = Chain(seen.leaf, seen.leaf.public_key(), seen.chain[1:])
                out.append(facts_from_chain(sent, f"{kind} chain on {self.spec.probe}:{port}"))
        return tuple(out)


def expired_before_live(leaf: x509.Certificate | None, live: Path | None, now: float) -> str | None:
    """Why a certificate must not replace the live one: it has expired and the live one
    lasts longer (an old file staged, or handed to the hook, again).  DANE-EE would still
    match, but PKIX and MTA-STS senders would fail.  None when it may."""
    if leaf is None or live is None or leaf.not_valid_after_utc.timestamp() >= now:
        return None
    ends = leaf.not_valid_after_utc
    try:
        current = load_chain(live).leaf
    except InputError:
        return None
    if current is None or current.not_valid_after_utc <= ends:
        return None
    return (
        f"the certificate expired on {ends:%Y-%m-%d %H:%M}Z, before the live one "
        f"(valid until {current.not_valid_after_utc:%Y-%m-%d %H:%M}Z)"
    )
