"""The README's first command runs as written (minus the install) and shows the zone it made."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import REPO, openssl_tlsa_data


def test_readme_first_command(tmp_path: Path) -> None:
    block = re.findall(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)[0].strip()
    assert block.startswith("pip install . && ")
    command = block.removeprefix("pip install . && ").replace("/tmp/", f"{tmp_path}/")
    result = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    leaf = openssl_tlsa_data(REPO / "examples" / "mail.example.com" / "cert.pem", 1, 1)
    nxt = openssl_tlsa_data(REPO / "examples" / "mail.example.com" / "next-key.pem", 1, 1, key=True)
    assert f"_25._tcp.mail.example.com. 3600 IN TLSA 3 1 1 {leaf}" in result.stdout
    assert f"_25._tcp.mail.example.com. 3600 IN TLSA 3 1 1 {nxt}" in result.stdout
    assert result.stdout.count(" IN TLSA 2 1 1 ") == 3  # YE1, YE2, YE3
    assert "mail.example.com: 5 added, 0 removed" in result.stdout
    assert " IN TLSA " not in (REPO / "examples" / "db.example.com").read_text()  # the example stays clean
