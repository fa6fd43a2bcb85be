"""The TSIG key of dynamic updates (RFC 8945): its settings and how they are read.

A BIND key file (``tsig_key_file``, as tsig-keygen writes it), or a key name with its
base64 secret in a file or an environment variable.  The secret never appears in a
message: errors name the setting or the file.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.tsigkeyring

from tlsa_manager.errors import ConfigError
from tlsa_manager.fsutil import read_regular
from tlsa_manager.secrets import SECRET_LIMIT, read_secret, secret_options, warn_if_readable

_KEY_BLOCK = re.compile(r'key\s+"?(?P<name>[^"\s{]+)"?\s*\{(?P<body>[^}]*)\}', re.IGNORECASE | re.DOTALL)
_ALGO = re.compile(r"algorithm\s+\"?(?P<algo>[\w.-]+)\"?\s*;", re.IGNORECASE)
_SECRET = re.compile(r'secret\s+"(?P<secret>[^"]+)"\s*;', re.IGNORECASE)

#: the settings of the key, for the provider's ``settings``
SETTINGS = {
    "tsig_key_file": "BIND key file (tsig-keygen output)",
    "tsig_name": "TSIG key name (with tsig_secret_file or tsig_secret_env)",
    **secret_options("tsig_secret", "base64 secret", inline=False),
    "tsig_algorithm": "hmac-sha256 (default), hmac-sha512, ...",
}
#: the provider's ``secret_settings``
SECRET_SETTINGS = {"tsig_secret": "the TSIG key's base64 secret"}


def read_bind_key_file(path: Path, wanted: str | None = None) -> tuple[str, str, str]:
    """(name, algorithm, secret) from a BIND key file such as tsig-keygen writes."""
    raw = read_regular(path, limit=SECRET_LIMIT, error=ConfigError, what="TSIG key file")
    warn_if_readable(path, "TSIG key file")
    text = raw.decode("utf-8", "replace")
    for match in _KEY_BLOCK.finditer(text):
        name, body = match.group("name"), match.group("body")
        if wanted and name.rstrip(".") != wanted.rstrip("."):
            continue
        algo = _ALGO.search(body)
        secret = _SECRET.search(body)
        if not secret:
            raise ConfigError(
                f"{path}: key {name!r} has no secret", 'write secret "BASE64"; in the key block'
            )
        return name, algo.group("algo") if algo else "hmac-sha256", secret.group("secret")
    raise ConfigError(
        f"{path}: no key block{f' named {wanted!r}' if wanted else ''}",
        'expected key "NAME" { algorithm hmac-sha256; secret "..."; };',
    )


def load_key(config: Mapping[str, Any]) -> tuple[Any, dns.name.Name, dns.name.Name]:
    """(keyring, key name, algorithm) from the settings: a BIND key file, or a key name
    with its secret in a file or a variable.  Unsigned updates are refused."""
    algorithm = str(config.get("tsig_algorithm", "hmac-sha256"))
    if config.get("tsig_key_file"):
        name, algorithm, secret = read_bind_key_file(
            Path(str(config["tsig_key_file"])), config.get("tsig_name")
        )
    elif config.get("tsig_name"):
        name = str(config["tsig_name"])
        found = read_secret(config, "TSIG secret", file_key="tsig_secret_file", env_key="tsig_secret_env")
        if found is None:
            raise ConfigError("tsig_name needs tsig_secret_file or tsig_secret_env", "or use tsig_key_file")
        secret = found
    else:
        raise ConfigError(
            "rfc2136 needs a TSIG key: unsigned updates are refused",
            "set tsig_key_file, or tsig_name with tsig_secret_file/tsig_secret_env",
        )
    try:
        base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"the TSIG secret of key {name!r} is not valid base64", "copy it again from the key file"
        ) from None
    try:
        keyname = dns.name.from_text(name)
        algo = dns.name.from_text(algorithm)
        keyring = dns.tsigkeyring.from_text({name: (algorithm, secret)})
    except (dns.exception.DNSException, ValueError, TypeError) as exc:
        raise ConfigError(
            f"TSIG key name {name!r} or algorithm {algorithm!r} is not usable ({type(exc).__name__})",
            'write the key name as a domain name, e.g. tsig_name = "tlsa-manager."',
        ) from None
    return keyring, keyname, algo
