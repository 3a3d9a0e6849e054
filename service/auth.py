"""API keys: who may call the API, for which tenant, with which scopes.

A key is ``fk_`` followed by 43 random URL-safe characters (256 bits), shown once when it is
created. Only its SHA-256 is kept, one key a line in the keys file
(``FENCED_API_KEYS_FILE``)::

    # sha256                                                           tenant  scopes       name
    5b0c...e1  acme    read,write   ci-deploy

A fast hash is enough: the keys are random, not passwords, so there is nothing to guess.
The file is re-read when it changes (checked at most once a second), so creating or
revoking a key needs no restart. ``fenced keys create|list|revoke`` manage it.

Scopes: ``read`` (GET resources and histories), ``write`` (POST commands; implies read),
``metrics`` (GET /metrics, which spans tenants).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

KEY_PREFIX = "fk_"
TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SCOPES = frozenset({"read", "write", "metrics"})
NAME = re.compile(r"^[\x21-\x7e]{1,64}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling. ``tenant`` None: authentication is off, streams are not namespaced."""

    tenant: str | None
    scopes: frozenset[str]
    name: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or (scope == "read" and "write" in self.scopes)

    def refusal(self, scope: str) -> str | None:
        """Why this caller may not do what needs ``scope`` (a 403's detail), or None if it may."""
        return None if self.allows(scope) else f"the key {self.name!r} lacks the {scope!r} scope this needs"


ANONYMOUS = Principal(None, SCOPES, "anonymous")


class KeyFileError(Exception):
    """The keys file cannot be read or has a bad line (the message says which)."""


class NotAuthenticated(Exception):
    """No API key in the request, or one that is unknown or revoked (answered 401)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyEntry:
    digest: str
    tenant: str
    scopes: frozenset[str]
    name: str

    def line(self) -> str:
        return f"{self.digest} {self.tenant} {','.join(sorted(self.scopes))} {self.name}"


def parse(text: str, source: str = "keys file") -> dict[str, KeyEntry]:
    entries: dict[str, KeyEntry] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 4:
            raise KeyFileError(f"{source}:{n}: expected '<sha256> <tenant> <scopes> <name>'")
        digest, tenant, scopes, name = parts
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise KeyFileError(f"{source}:{n}: the first field must be a SHA-256 in hex")
        if not TENANT.match(tenant):
            raise KeyFileError(f"{source}:{n}: tenant {tenant!r} must be 1-63 of a-z 0-9 -")
        wanted = frozenset(scopes.split(","))
        if not wanted or not wanted <= SCOPES:
            raise KeyFileError(f"{source}:{n}: scopes must be a comma-separated subset of {sorted(SCOPES)}")
        entries[digest] = KeyEntry(digest, tenant, wanted, name)
    return entries


class KeyFile:
    """The keys file, re-read when its modification time or size changes."""

    def __init__(self, path: str | Path, recheck_s: float = 1.0) -> None:
        self.path = Path(path)
        self.recheck_s = recheck_s
        self._entries: dict[str, KeyEntry] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.load()

    def load(self) -> None:
        try:
            st = self.path.stat()
            text = self.path.read_text()
        except OSError as e:
            raise KeyFileError(f"cannot read the API keys file {self.path}: {e.strerror or e}; create a key "
                               f"with `fenced keys create --tenant <name> --file {self.path}`") from e
        self._entries = parse(text, str(self.path))
        self._stamp = (st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.recheck_s:
            return
        with self._lock:
            self._checked = now
            try:
                st = self.path.stat()
                if (st.st_mtime_ns, st.st_size) != self._stamp:
                    self.load()
            except (OSError, KeyFileError):
                pass  # keep serving the keys last read; a broken edit must not lock everyone out

    def lookup(self, key: str) -> Principal | None:
        self._refresh()
        if not key.startswith(KEY_PREFIX) or len(key) > 128:
            return None
        entry = self._entries.get(hash_key(key))
        return None if entry is None else Principal(entry.tenant, entry.scopes, entry.name)

    def authenticate(self, authorization: str) -> Principal:
        """The caller of a request with this ``Authorization`` header value, or :class:`NotAuthenticated`."""
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise NotAuthenticated("an API key is required: send 'Authorization: Bearer <key>'")
        principal = self.lookup(key.strip())
        if principal is None:
            raise NotAuthenticated("the API key is not valid (unknown or revoked)")
        return principal

    def entries(self) -> list[KeyEntry]:
        self._refresh()
        return list(self._entries.values())


def create_key(path: str | Path, tenant: str, scopes: frozenset[str], name: str) -> str:
    """Append a new key to the file (created 0600 if missing); returns the key, shown once."""
    if not TENANT.match(tenant):
        raise KeyFileError(f"tenant {tenant!r} must be 1-63 characters of a-z 0-9 - (starting with a-z 0-9)")
    if not scopes or not scopes <= SCOPES:
        raise KeyFileError(f"scopes must be a non-empty subset of {sorted(SCOPES)}")
    if not NAME.match(name):
        raise KeyFileError("the name must be 1-64 visible ASCII characters without spaces")
    p = Path(path)
    existing = parse(p.read_text(), str(p)) if p.exists() else {}
    if any(e.name == name for e in existing.values()):
        raise KeyFileError(f"a key named {name!r} exists already; revoke it first or pick another name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    entry = KeyEntry(hash_key(key), tenant, scopes, name)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        if not existing and p.stat().st_size == 0:
            f.write("# fenced API keys: sha256 tenant scopes name (see `fenced keys --help`)\n")
        f.write(entry.line() + "\n")
    return key


def revoke_key(path: str | Path, name: str) -> bool:
    """Remove the key called ``name``; False if there is none."""
    p = Path(path)
    lines = p.read_text().splitlines()
    kept = [ln for ln in lines if ln.strip().startswith("#") or len(ln.split()) != 4 or ln.split()[3] != name]
    if len(kept) == len(lines):
        return False
    tmp = p.with_suffix(".tmp")
    tmp.write_text("\n".join(kept) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(p)
    return True
