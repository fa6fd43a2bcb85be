"""The README's first command runs as written - `pip install .` included - in a fresh
virtual environment, with a PATH that holds nothing but that environment and the system
directories, and shows the zone it made."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

from conftest import REPO, SYSTEM_PATH, openssl_tlsa_data


def readme_blocks() -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)]


def fresh_venv(where: Path) -> Path:
    """A new venv that sees this environment's dependencies (so `pip install .` builds
    only tlsa-manager and needs no network) but not its tlsa-manager console script."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, capture_output=True)
    site = next((where / "lib").glob("python3*/site-packages"))
    paths = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "zz-test-deps.pth").write_text("".join(f"{p}\n" for p in paths))
    return where / "bin"


def test_readme_first_command(tmp_path: Path) -> None:
    block = readme_blocks()[0]
    assert block.startswith("pip install . && ")
    bindir = fresh_venv(tmp_path / "venv")
    command = block.replace("/tmp/", f"{tmp_path}/")
    env = {**os.environ, "PATH": f"{bindir}:{SYSTEM_PATH}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (bindir / "tlsa-manager").exists()  # the README's own install made the command
    leaf = openssl_tlsa_data(REPO / "examples" / "mail.example.com" / "cert.pem", 1, 1)
    nxt = openssl_tlsa_data(REPO / "examples" / "mail.example.com" / "next-key.pem", 1, 1, key=True)
    assert f"_25._tcp.mail.example.com. 3600 IN TLSA 3 1 1 {leaf}" in result.stdout
    assert f"_25._tcp.mail.example.com. 3600 IN TLSA 3 1 1 {nxt}" in result.stdout
    assert result.stdout.count(" IN TLSA 2 1 1 ") == 3  # YE1, YE2, YE3
    assert "mail.example.com: 5 added, 0 removed" in result.stdout
    assert " IN TLSA " not in (REPO / "examples" / "db.example.com").read_text()  # the example stays clean
