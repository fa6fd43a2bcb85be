"""Helpers of the robustness suite: the CLI as a subprocess (as root or as ``nobody``),
a zone-file site in a directory other users can reach, and the invariants every
failed run must keep (one line, documented code, no traceback, no secret)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
CHAIN = EXAMPLES / "mail.example.com" / "fullchain.pem"
NEXT_KEY = EXAMPLES / "mail.example.com" / "next-key.pem"
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
#: Values that stand for secrets in these tests: none may appear in any output or file.
TOKEN = "Zq9XvB3kLw7TnR2mYp5HsD8cFj4GaE6uKt1V"
TSIG_SECRET = "c2VrcmV0LXRzaWcta2V5LWZvci10ZXN0cy1vbmx5IQ=="


@dataclass
class Run:
    code: int
    out: str
    err: str

    def one_line_error(self, code: int, *fragments: str) -> None:
        """The documented shape of every failure: exit code, one stderr line, no traceback."""
        assert self.code == code, self
        assert self.err.count("\n") == 1, self.err
        assert self.err.startswith("tlsa-manager: error: "), self.err
        assert "Traceback" not in self.err + self.out and "internal error" not in self.err, self
        for fragment in fragments:
            assert fragment in self.err, (fragment, self.err)


def tlsa_manager(
    *args: object,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    timeout: float = 60,
) -> Run:
    """``python -m tlsa_manager ARGS`` in a subprocess (``user="nobody"`` drops root first)."""
    prefix = NOBODY if user == "nobody" else []
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TLSA_MANAGER", "CLOUDFLARE"))}
    full_env.update(env or {})
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "tlsa_manager", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Run(result.returncode, result.stdout, result.stderr)


def as_nobody(*argv: str, cwd: Path | None = None) -> None:
    """A local attacker's action: run ``argv`` as user nobody."""
    subprocess.run([*NOBODY, *argv], check=True, cwd=cwd, capture_output=True, timeout=30)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder under /tmp that user nobody can reach (pytest's tmp_path is 0700 root)."""
    root = Path(tempfile.mkdtemp(prefix="tlsa-robust-"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def zone_site(base: Path) -> dict[str, Path]:
    """The README demo shape: a hand-written zone, a state dir, the example chain."""
    zones = base / "zones"
    zones.mkdir(parents=True, exist_ok=True)
    zone = zones / "db.example.com"
    shutil.copy(EXAMPLES / "db.example.com", zone)
    return {"zone": zone, "zones": zones, "state": base / "state", "chain": CHAIN}


def sync_args(site: Mapping[str, Path], *extra: object) -> list[object]:
    return [
        "--state-dir",
        site["state"],
        "sync",
        "mail.example.com",
        "--cert",
        site["chain"],
        "--zone-file",
        site["zone"],
        *extra,
    ]


def tree_snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and link (target) under ``root``: to prove nothing changed."""
    out: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = path.read_bytes()
    return out


def no_secret_anywhere(root: Path, *runs: Run, secrets: tuple[str, ...] = (TOKEN, TSIG_SECRET)) -> None:
    """No secret in any output, nor in any file the run wrote under ``root``."""
    for run in runs:
        for secret in secrets:
            assert secret not in run.out and secret not in run.err, run
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix not in (".secret", ".key", ".toml"):
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, path
