"""Loading a private key and checking it is whole, at the cost a fleet can pay.

cryptography validates an RSA private key with OpenSSL's ``RSA_check_key``, which
spends nearly all of its time proving p and q prime: 64 Miller-Rabin rounds each,
about 45 ms for a 2048-bit key and 400 ms for a 4096-bit one.  ``sync`` and ``plan``
load every host's key on every run, so a fleet of RSA hosts paid that per host, per
run.  Here the key is parsed by cryptography as before (the same parser, the same
refusals) and then held to every equation ``RSA_check_key`` checks: e odd and not 1,
p and q odd, n = p*q, e*d = 1 mod lcm(p-1, q-1), the CRT values d mod (p-1),
d mod (q-1) and q^-1 mod p.  A damaged, truncated, edited or mismatched key breaks
one of them; what is not re-proven is that p and q are prime, which only a key made
with composite "primes" on purpose (and consistent in every other way) could fail.
EC keys are still checked by OpenSSL (priv*G = pub: tens of microseconds).
"""

from __future__ import annotations

from collections.abc import Callable
from math import gcd

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

Loader = Callable[..., PrivateKeyTypes]


def load_private_key(loader: Loader, blob: bytes, passphrase: bytes | None) -> PrivateKeyTypes:
    """``loader(blob, password=passphrase)`` (cryptography's PEM or DER loader) with an
    RSA key checked here instead of by OpenSSL; a key that is not whole raises the
    ValueError cryptography raises for it."""
    key = loader(blob, password=passphrase, unsafe_skip_rsa_key_validation=True)
    if isinstance(key, rsa.RSAPrivateKey) and not rsa_whole(key.private_numbers()):
        raise ValueError("Invalid private key")
    return key


def _c_remainder(value: int, modulus: int) -> int:
    """``value mod modulus`` as OpenSSL's BN_mod gives it (the sign of ``value``)."""
    rest = abs(value) % modulus
    return -rest if value < 0 else rest


def rsa_whole(numbers: rsa.RSAPrivateNumbers) -> bool:
    """What ``RSA_check_key`` (and cryptography's p, q odd) require, but primality."""
    p, q, d = numbers.p, numbers.q, numbers.d
    e, n = numbers.public_numbers.e, numbers.public_numbers.n
    if e == 1 or e % 2 == 0 or p < 3 or q < 3 or p % 2 == 0 or q % 2 == 0:
        return False
    if p * q != n or gcd(p, q) != 1:
        return False
    lam = (p - 1) * (q - 1) // gcd(p - 1, q - 1)
    return (
        d * e % lam == 1
        and _c_remainder(d, p - 1) == numbers.dmp1
        and _c_remainder(d, q - 1) == numbers.dmq1
        and pow(q, -1, p) == numbers.iqmp
    )
