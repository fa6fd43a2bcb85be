"""The next key of each key type, kept ready so that a key rollover needs no wait.

"Current + next": the "3 1 1" record of the key the *next* certificate will use is
published long before that certificate exists.  When the ACME client issues with
that key (a CSR made from it: ``tlsa-manager key csr``), every sender's cached
RRset already matches the new chain, so the hook deploys it at once; then a fresh
next key is made and pre-published for the renewal after that.

Where: ``STATE_DIR/next-keys/HOST/ecdsa.key`` and ``rsa.key`` (PKCS#8 PEM, ECDSA
P-256 and RSA 2048), directory 0700, files 0600.  A key file is never overwritten:
it is written to a temporary file in the same directory and linked to its name,
which fails if the name exists (O_EXCL semantics, and a reader never sees half a
key).  A next key whose public key is now the key of a live or staged chain has
done its job and is removed (the staged/live file holds it from then on).
Reference: docs/key-rollover.md.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tlsa_manager.config import HostSpec
from tlsa_manager.errors import InputError, StateError, UsageError

#: The key types a next key is made for, and how.
KEY_TYPES = ("ecdsa", "rsa")
SUBDIR = "next-keys"


def key_dir(state_dir: Path, host: str) -> Path:
    """Where the next keys of ``host`` live (the host name as configured, lower case)."""
    return state_dir.joinpath(SUBDIR, host.rstrip(".").lower())  # one join: a fleet asks per host


def key_path(directory: Path, key_type: str) -> Path:
    return directory / f"{key_type}.key"


def existing(directory: Path) -> list[Path]:
    """The next key files present now (regular files only; never follows a link)."""
    out = []
    for key_type in KEY_TYPES:
        path = key_path(directory, key_type)
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode):
            raise StateError(f"{path}: not a regular file", "remove it; tlsa-manager makes a new next key")
        out.append(path)
    return out


def _ensure_dir(directory: Path) -> None:
    """Create the key folder 0700 (parents 0700 too) and refuse a link planted in its place."""
    from tlsa_manager.fsutil import make_dir

    make_dir(directory, 0o700, StateError, what="next-key folder")
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise StateError(f"{directory}: not a directory", "remove it; tlsa-manager recreates it")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, 0o700)


def generate(key_type: str) -> bytes:
    """A new private key of ``key_type`` as unencrypted PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

    key: PrivateKeyTypes
    if key_type == "ecdsa":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise UsageError(f"no next key for key type {key_type!r}", f"use one of: {', '.join(KEY_TYPES)}")
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def create(path: Path, pem: bytes) -> bool:
    """Write a new key file 0600 without ever replacing one; False if it already exists."""
    _ensure_dir(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise StateError(f"{path.parent}: cannot write a key ({exc.strerror})", "fix its mode") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp_name, path)  # fails if the name exists: never clobbers a key
        except FileExistsError:
            return False
        from tlsa_manager.fsutil import fsync_dir

        fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def public_spki(path: Path) -> bytes:
    """The SPKI (DER) of a key file."""
    from tlsa_manager.certs import load_chain
    from tlsa_manager.records import spki_der

    chain = load_chain(path)
    if chain.key is None or chain.leaf is not None:
        raise StateError(f"{path}: not a bare key", "remove it; tlsa-manager makes a new next key")
    return spki_der(chain.key)


@dataclass(frozen=True)
class Refresh:
    """What one refresh did, for the report: created and retired key files."""

    created: tuple[Path, ...] = ()
    retired: tuple[Path, ...] = ()

    def notes(self) -> list[str]:
        out = [f"the next {p.stem.upper()} key is in use now; its file {p} is removed" for p in self.retired]
        out += [
            f"made the next {p.stem.upper()} key {p}; its 3 1 1 record is pre-published before it is used"
            for p in self.created
        ]
        return out


def refresh(directory: Path, key_types: Iterable[str], in_use: Iterable[bytes]) -> Refresh:
    """Retire next keys that a live or staged chain now uses; make any that are missing.

    ``key_types`` are the key types the host serves (one next key each); ``in_use``
    the SPKIs of the host's live and staged chains.
    """
    used = set(in_use)
    retired = []
    for path in existing(directory) if directory.exists() else []:
        if public_spki(path) in used:
            path.unlink()
            retired.append(path)
    created = []
    for key_type in sorted(set(key_types)):
        if key_type not in KEY_TYPES:
            continue
        path = key_path(directory, key_type)
        if not path.exists() and create(path, generate(key_type)):
            created.append(path)
    return Refresh(tuple(created), tuple(retired))


def find_key(candidates: Sequence[Path], spki: bytes) -> Path | None:
    """The candidate *private* key file whose public key is ``spki`` (a CSR-issued
    certificate's key); a public-key-only file in ``next_keys`` never counts, since the
    staged file must carry the private key the MTA serves with."""
    from tlsa_manager.certs import load_material
    from tlsa_manager.records import spki_der

    for path in candidates:
        with contextlib.suppress(InputError, StateError):
            private = load_material(path).private_keys
            if len(private) == 1 and spki_der(private[0].public_key()) == spki:
                return path
    return None


def csr(key_file: Path, names: Sequence[str]) -> bytes:
    """A CSR (PEM) for ``names`` signed by the key in ``key_file``; the first name is the CN."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    from tlsa_manager.certs import read_bytes

    key = serialization.load_pem_private_key(read_bytes(key_file), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InputError(f"{key_file}: not an ECDSA or RSA key", "remove it; tlsa-manager makes a new one")
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def next_key_files(spec: HostSpec, state_dir: Path) -> list[Path]:
    """Every next key of a host: configured ``next_keys`` and the tool-managed ones."""
    directory = key_dir(state_dir, spec.name)
    return [*spec.next_keys, *(existing(directory) if directory.is_dir() else [])]


def _served(spec: HostSpec) -> list[tuple[str, bytes]]:
    """(key type, SPKI) of every live and staged chain of the host, from its files."""
    from tlsa_manager.certs import load_chain
    from tlsa_manager.records import spki_der

    files = list(spec.certs)
    if spec.staged_dir is not None:  # staged under the live file's name (hooks.stage)
        files += [spec.staged_dir / p.name for p in spec.certs if (spec.staged_dir / p.name).is_file()]
    out = []
    for path in files:
        chain = load_chain(path)
        if chain.key is not None:
            out.append((chain.key_type, spki_der(chain.key)))
    return out


@dataclass(frozen=True)
class NextKey:
    """One next key of ``key next``: its type, file, whether this run made it, its record."""

    key_type: str
    path: Path
    state: str  # "new" or "kept"
    record: str

    def as_dict(self) -> dict[str, str]:
        return {"type": self.key_type, "file": str(self.path), "state": self.state, "record": self.record}


@dataclass(frozen=True)
class KeyReport:
    """What ``key next`` / ``key csr`` did: lines for people, a document for ``--json``
    (docs/key-rollover.md), and for ``csr`` the CSR itself."""

    host: str
    action: str
    notes: tuple[str, ...] = ()
    keys: tuple[NextKey, ...] = ()
    csr: bytes | None = None
    csr_key: Path | None = None
    names: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        if self.csr is not None:
            key_type = self.csr_key.stem.upper() if self.csr_key else ""
            return [f"{self.host}: CSR for the next {key_type} key {self.csr_key}"]
        lines = list(self.notes)
        for key in self.keys:
            lines.append(
                f"{self.host}: next {key.key_type.upper()} key {key.path} ({key.state}): {key.record}"
            )
        lines.append("the next 'tlsa-manager sync' pre-publishes what is not published yet")
        return lines

    def as_dict(self) -> dict[str, object]:
        if self.csr is not None:
            return {
                "host": self.host,
                "type": self.csr_key.stem if self.csr_key else None,
                "key_file": str(self.csr_key),
                "names": list(self.names),
                "csr": self.csr.decode("ascii"),
            }
        return {"host": self.host, "keys": [k.as_dict() for k in self.keys], "notes": list(self.notes)}


def key_command(
    spec: HostSpec, state_dir: Path, action: str, types: Sequence[str] | None, names: Sequence[str]
) -> KeyReport:
    """``key next``: make the missing next keys (retiring used ones); ``key csr``: a CSR."""
    from tlsa_manager.fsutil import check_trusted_dir
    from tlsa_manager.records import MatchingType, Selector, Tlsa, Usage, digest

    # A folder another user may write could hand us their key to certify: refused (exit 3).
    check_trusted_dir(state_dir)
    directory = key_dir(state_dir, spec.name)
    served = _served(spec)
    if action == "next":
        wanted = list(types or sorted({t for t, _ in served} & set(KEY_TYPES)))
        if not wanted:
            raise UsageError(
                f"{spec.name} serves no ECDSA or RSA chain yet to make a next key for",
                "name the key type: key next HOST --type ecdsa --type rsa",
            )
        done = refresh(directory, wanted, [spki for _, spki in served])
        keys = []
        for path in existing(directory):
            spki = public_spki(path)
            record = Tlsa(
                Usage.DANE_EE, Selector.SPKI, MatchingType.SHA2_256, digest(MatchingType.SHA2_256, spki)
            )
            state = "new" if path in done.created else "kept"
            keys.append(NextKey(path.stem, path, state, record.to_text()))
        return KeyReport(spec.name, action, notes=tuple(done.notes()), keys=tuple(keys))
    available = {p.stem: p for p in (existing(directory) if directory.is_dir() else [])}
    if types and len(types) != 1:
        raise UsageError("key csr makes one CSR: give one --type", "e.g. key csr HOST --type ecdsa")
    key_type = types[0] if types else (next(iter(available)) if len(available) == 1 else None)
    if key_type is None:
        raise UsageError(
            f"{spec.name} has {len(available)} next keys; say which", "e.g. key csr HOST --type ecdsa"
        )
    if key_type not in available:
        raise UsageError(
            f"{spec.name} has no next {key_type.upper()} key",
            f"make it first: key next {spec.name} --type {key_type}",
        )
    all_names = (spec.name, *[n for n in names if n.lower() != spec.name])
    data = csr(available[key_type], list(all_names))
    return KeyReport(spec.name, action, csr=data, csr_key=available[key_type], names=all_names)
