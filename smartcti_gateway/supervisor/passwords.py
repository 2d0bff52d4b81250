"""Supervisors' password hashes: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``, and ``hash-password``.

scrypt from the standard library (hashlib): no dependency, memory-hard, parameters kept in the hash so
that they can be raised later without breaking the hashes already in a config. The password itself is
never printed, logged or kept.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import hmac
import secrets
import sys

N, R, P = 2 ** 14, 8, 1          # 16 MiB and ~50 ms per check on a current server
SALT_BYTES = 16
HASH_BYTES = 32
MAX_MEMORY = 64 * 1024 * 1024    # a hash whose parameters need more than this is refused at load
MIN_LENGTH = 8
PREFIX = "scrypt"


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, HASH_BYTES)
    return "$".join((PREFIX, str(n), str(r), str(p), _b64(salt), _b64(digest)))


def hash_problem(text: str) -> str | None:
    """Why ``text`` is not a hash this module can check, or None."""
    try:
        _parse(text)
    except ValueError as e:
        return str(e)
    return None


def verify_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches ``hashed``; False for a wrong password or a malformed hash."""
    try:
        n, r, p, salt, digest = _parse(hashed)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(digest)), digest)


_NOBODY_SALT = secrets.token_bytes(SALT_BYTES)


def check_nobody(password: str) -> bool:
    """The work of one check, for a user who does not exist: the refusal takes as long as a wrong password,
    so its time does not tell which user names exist. Always False."""
    _scrypt(password, _NOBODY_SALT, N, R, P, HASH_BYTES)
    return False


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=MAX_MEMORY + 1024 * 1024)


def _parse(text: str) -> tuple[int, int, int, bytes, bytes]:
    parts = text.split("$") if isinstance(text, str) else []
    if len(parts) != 6 or parts[0] != PREFIX:
        raise ValueError("is not a password hash of smartcti-gateway hash-password "
                         "(scrypt$<n>$<r>$<p>$<salt>$<hash>)")
    try:
        n, r, p = (int(v) for v in parts[1:4])
    except ValueError:
        raise ValueError("has scrypt parameters n, r, p that are not numbers") from None
    if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16 or 128 * r * n > MAX_MEMORY:
        raise ValueError(f"has scrypt parameters n={n}, r={r}, p={p} out of range (n a power of 2, "
                         f"128·n·r at most {MAX_MEMORY // 2 ** 20} MiB)")
    try:
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("has a salt or hash that is not base64") from None
    if len(salt) < SALT_BYTES or len(digest) < HASH_BYTES:
        raise ValueError("has a salt or hash too short to be one of ours (cut while copying?)")
    return n, r, p, salt, digest


# ----------------------------------------------------------------- command line
def add_hash_password_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "hash-password", help="make the password hash of a supervisor (supervisor.users in the config)",
        description="Read a password (twice, without echo, from the terminal; once from standard input with "
                    "--stdin or when it is not a terminal) and print its scrypt hash, to put in the config "
                    "as supervisor.users: {name: \"<hash>\"}. The password is never printed.")
    p.add_argument("--stdin", action="store_true", help="read the password once from standard input")
    p.set_defaults(func=run_hash_password)
    return p


def run_hash_password(args: argparse.Namespace) -> int:
    if args.stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        try:
            password = getpass.getpass("Password: ")
            again = getpass.getpass("Password again: ")
        except (EOFError, KeyboardInterrupt):
            print("\nno password given", file=sys.stderr)
            return 1
        if password != again:
            print("the two passwords differ; nothing done", file=sys.stderr)
            return 1
    if len(password) < MIN_LENGTH:
        print(f"a supervisor's password has at least {MIN_LENGTH} characters; nothing done", file=sys.stderr)
        return 1
    print(hash_password(password))
    if sys.stderr.isatty():
        print('put it in the config as supervisor: {users: {<name>: "<the line above>"}}', file=sys.stderr)
    return 0
