"""Our own reader and appender for OpenSSH ``known_hosts`` files.

Paramiko's loader gives up on the whole file at the first ``@cert-authority``
or ``@revoked`` line, never matches wildcard patterns, and its ``save()``
rewrites the file without its comments. This module follows sshd(8)'s
"SSH_KNOWN_HOSTS FILE FORMAT" instead, tolerates lines it cannot use (recording
why), and only ever appends. Keys are compared as (key type, raw blob), so no
paramiko import is needed.

Deliberate limits: ``@cert-authority`` lines are skipped (we do not verify
host certificates), and ``@revoked`` refuses the key for every host, which is
stricter than OpenSSH (where the line's host patterns also apply). A pattern
without brackets never matches a port other than 22, so a bare ``*`` does not
cover ``[host]:2222`` as it does in ssh(1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple

__all__ = [
    "HostKeyVerdict",
    "KnownHosts",
    "KnownKey",
    "SkippedLine",
    "VerdictKind",
    "append_known_host",
    "fingerprint",
    "host_key_name",
]

VerdictKind = Literal["known", "changed", "revoked", "unknown"]

_HASH_MAGIC = "|1|"
_SHA1_LEN = 20
_FIELD_SEP = re.compile(r"[ \t]+")
# Characters that would turn an appended host name into a pattern, a hash, a
# second field or a second line.
_NOT_IN_HOST = re.compile(r"[\s,*?!|#]")


def host_key_name(host: str, port: int) -> str:
    """Name a host the way OpenSSH stores it: ``host`` on port 22, else ``[host]:port``.

    The host is lowercased because ssh(1) lowercases it before any lookup,
    which matters for hashed entries (the hash covers the exact text).
    """
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    name = host.lower()
    return name if port == 22 else f"[{name}]:{port}"


def fingerprint(blob: bytes) -> str:
    """``SHA256:<base64 without padding>``, as ``ssh-keygen -l`` prints it."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii")
    return "SHA256:" + digest.rstrip("=")


@dataclass(frozen=True)
class KnownKey:
    """One key line, kept with where it came from so errors can cite ``path:line``."""

    keytype: str
    blob: bytes
    path: Path
    line: int
    revoked: bool = False

    @property
    def where(self) -> str:
        """``path:line``, the form editors and ``ssh-keygen -R`` users recognise."""
        return f"{self.path}:{self.line}"


class SkippedLine(NamedTuple):
    """A line (or, with ``line == 0``, a whole file) we could not use, and why."""

    path: Path
    line: int
    reason: str


@dataclass(frozen=True)
class HostKeyVerdict:
    """What the known_hosts files say about the key a server offered.

    ``known``: *match* is the line listing this exact key.
    ``revoked``: *match* is the ``@revoked`` line listing it.
    ``changed``: *conflicts* are the lines with another key of the same type.
    ``unknown``: *other_types* are key types recorded for the host, if any,
    so the message can say the server may just be offering a different type.
    """

    kind: VerdictKind
    name: str
    keytype: str
    fingerprint: str
    match: KnownKey | None = None
    conflicts: tuple[KnownKey, ...] = ()
    other_types: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True only when the key is on record and not revoked."""
        return self.kind == "known"

    def describe(self) -> str:
        """One line for the user, citing the file lines that decided it."""
        key = f"{self.keytype} key {self.fingerprint} for {self.name}"
        if self.kind == "known":
            assert self.match is not None
            return f"{key} is known ({self.match.where})"
        if self.kind == "revoked":
            assert self.match is not None
            return f"{key} is REVOKED ({self.match.where})"
        if self.kind == "changed":
            where = ", ".join(k.where for k in self.conflicts)
            return f"{key} does not match the {self.keytype} key on record ({where})"
        if self.other_types:
            return f"{key} is not known; known key types: {', '.join(self.other_types)}"
        return f"{key} is not known"


@dataclass(frozen=True)
class _Entry:
    patterns: tuple[str, ...]
    key: KnownKey


class KnownHosts:
    """Keys from one or more known_hosts files, in file order."""

    def __init__(
        self,
        entries: Sequence[_Entry] = (),
        skipped: Sequence[SkippedLine] = (),
    ) -> None:
        self._entries = tuple(e for e in entries if not e.key.revoked)
        self._revoked = tuple(e.key for e in entries if e.key.revoked)
        self.skipped: tuple[SkippedLine, ...] = tuple(skipped)

    @classmethod
    def load(cls, paths: Sequence[Path]) -> KnownHosts:
        """Read *paths* in order without ever raising for their content.

        A missing file counts as empty (a first connection is normal); an
        unreadable file or an unusable line is recorded in ``skipped``, so one
        bad line cannot hide every other key the way paramiko's loader does.
        """
        entries: list[_Entry] = []
        skipped: list[SkippedLine] = []
        for path in paths:
            path = Path(path).expanduser()
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                skipped.append(SkippedLine(path, 0, f"cannot read: {exc.strerror or exc}"))
                continue
            # OpenSSH reads with getline(): only "\n" ends a line.
            for number, raw in enumerate(data.split(b"\n"), start=1):
                parsed = _parse_line(raw, path, number)
                if isinstance(parsed, _Entry):
                    entries.append(parsed)
                elif parsed is not None:
                    skipped.append(SkippedLine(path, number, parsed))
        return cls(entries, skipped)

    def keys_for(self, host: str, port: int) -> list[KnownKey]:
        """Non-revoked keys whose host patterns match *host*:*port*, in file order."""
        name = host_key_name(host, port)
        bracketed = port != 22
        return [e.key for e in self._entries if _matches(e.patterns, name, bracketed)]

    def check(self, host: str, port: int, keytype: str, blob: bytes) -> HostKeyVerdict:
        """Decide whether the offered key is known, changed, revoked or new.

        Revocation is checked first and ignores host patterns: a revoked key
        is refused even if another line still lists it as known.
        """
        name, fp = host_key_name(host, port), fingerprint(blob)
        for key in self._revoked:
            if key.blob == blob:
                return HostKeyVerdict("revoked", name, keytype, fp, match=key)
        keys = self.keys_for(host, port)
        same_type = [k for k in keys if k.keytype == keytype]
        for key in same_type:
            if key.blob == blob:
                return HostKeyVerdict("known", name, keytype, fp, match=key)
        if same_type:
            return HostKeyVerdict("changed", name, keytype, fp, conflicts=tuple(same_type))
        other = tuple(dict.fromkeys(k.keytype for k in keys))
        return HostKeyVerdict("unknown", name, keytype, fp, other_types=other)


def append_known_host(path: Path, host: str, port: int, keytype: str, blob: bytes) -> None:
    """Append one ``<name> <keytype> <base64>`` line, never rewriting what is there.

    One ``O_APPEND`` write keeps concurrent appenders from interleaving and
    leaves comments, hashed entries and markers byte-for-byte intact. A
    missing file is created 0600 and a missing directory 0700, like ssh(1).
    """
    name = host_key_name(host, port)
    if not host or _NOT_IN_HOST.search(host):
        raise ValueError(f"refusing to write host {host!r} to known_hosts")
    if not keytype or _FIELD_SEP.search(keytype) or not keytype.isprintable():
        raise ValueError(f"refusing to write key type {keytype!r} to known_hosts")
    if not blob:
        raise ValueError("refusing to write an empty key to known_hosts")
    line = f"{name} {keytype} {base64.b64encode(blob).decode('ascii')}\n".encode("ascii")

    path = Path(path).expanduser()
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags | os.O_EXCL, 0o600)
        created = True
    except FileExistsError:
        fd = os.open(path, flags, 0o600)
        created = False
    try:
        if created:
            os.fchmod(fd, 0o600)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path}: {written} of {len(line)} bytes")
    finally:
        os.close(fd)


def _parse_line(raw: bytes, path: Path, number: int) -> _Entry | str | None:
    """An entry, a reason to skip the line, or None for blanks and comments."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8"
    text = text.rstrip("\r").strip(" \t")
    if not text or text.startswith("#"):
        return None
    fields = _FIELD_SEP.split(text)
    revoked = False
    if fields[0].startswith("@"):
        marker = fields.pop(0)
        if marker == "@cert-authority":
            return "@cert-authority lines are not supported (host certificates are not checked)"
        if marker != "@revoked":
            return f"unknown marker {marker!r}"
        revoked = True
    if len(fields) < 3:
        return "too few fields (want: hostpatterns keytype base64-key)"
    hostfield, keytype, encoded = fields[0], fields[1], fields[2]
    # Plain patterns compare case-insensitively; hashes are base64, so keep them as written.
    patterns = tuple(
        p if p.lstrip("!").startswith("|") else p.lower() for p in hostfield.split(",") if p
    )
    for pattern in patterns:
        if pattern.lstrip("!").startswith("|") and _split_hash(pattern.lstrip("!")) is None:
            return f"malformed hashed host {pattern!r}"
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "key is not valid base64"
    inner = _blob_type(blob)
    if inner is None:
        return "key blob is truncated"
    if inner != keytype:
        return f"key type {keytype!r} does not match the key blob ({inner!r})"
    key = KnownKey(keytype=keytype, blob=blob, path=path, line=number, revoked=revoked)
    return _Entry(patterns=patterns, key=key)


def _blob_type(blob: bytes) -> str | None:
    """The key type named inside an SSH wire-format blob (its first string)."""
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    name = blob[4 : 4 + length]
    if len(name) != length:
        return None
    try:
        return name.decode("ascii")
    except UnicodeDecodeError:
        return None


def _split_hash(pattern: str) -> tuple[bytes, bytes] | None:
    """(salt, hmac) of a ``|1|salt|hmac`` entry, or None when malformed."""
    if not pattern.startswith(_HASH_MAGIC):
        return None
    parts = pattern[len(_HASH_MAGIC) :].split("|")
    if len(parts) != 2:
        return None
    try:
        salt, digest = (base64.b64decode(p, validate=True) for p in parts)
    except (binascii.Error, ValueError):
        return None
    if len(salt) != _SHA1_LEN or len(digest) != _SHA1_LEN:
        return None
    return salt, digest


def _matches(patterns: tuple[str, ...], name: str, bracketed: bool) -> bool:
    """OpenSSH's match_hostname(): any positive match and no negated one.

    A pattern without brackets only ever names port 22, so it is ignored
    when *bracketed* (the port is not 22) even if a bare ``*`` would glob
    across ``[host]:port``.
    """
    positive = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        if body.startswith("|"):
            hit = _hash_matches(body, name)
        elif bracketed and not body.startswith("["):
            hit = False
        else:
            hit = _glob(body).fullmatch(name) is not None
        if hit and negated:
            return False
        positive = positive or hit
    return positive


def _hash_matches(pattern: str, name: str) -> bool:
    parts = _split_hash(pattern)
    if parts is None:
        return False
    salt, digest = parts
    mac = hmac.new(salt, name.encode("utf-8"), hashlib.sha1).digest()
    return hmac.compare_digest(mac, digest)


@lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """OpenSSH's match_pattern(): ``*`` and ``?`` only; ``[`` is a literal."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)
