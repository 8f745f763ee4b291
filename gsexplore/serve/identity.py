"""Who sent a request: the students' keys and their labels, the teacher's admin keys, and the sender's name.

A key file has one key a line, optionally followed by the student's label
(``x8f2... ana``); ``#`` starts a comment. Keys without a label are named
``alumno-1``, ``alumno-2``... in file order (numbers a label already uses are
skipped). The label, never the key, is what logs, metrics, the teacher's view and
the class record show, and what the engine's fair share reads (`Params.user`).

The sender of a request:

* with keys: the label of the key it carries (a ``user`` field in the body cannot
  name someone else: the label overwrites it);
* without keys (a lab on 127.0.0.1): the request's ``user`` field;
* otherwise `ANONYMOUS`.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GSExploreError
from .errors import Reject

__all__ = ["ANONYMOUS", "TEACHER", "DEFAULT_PREFIX", "Caller", "Roster", "parse_key_lines", "read_key_file"]

#: The sender of a request without keys and without ``user``.
ANONYMOUS = "anon"
#: The label of an admin key given without one.
TEACHER = "docente"
#: Unlabelled keys are named DEFAULT_PREFIX-1, -2, ...
DEFAULT_PREFIX = "alumno"
_LABEL = re.compile(r"^[^\s#]{1,64}$")


def parse_key_lines(text: str, source: str = "the key file", *, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """``{key: label}`` from key-file text: ``KEY [label]`` a line; unlabelled keys get ``prefix-N``."""
    pairs: list[tuple[str, str | None]] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, label = line.partition(" ")
        label = label.strip() or None
        if label is not None and not _LABEL.match(label):
            raise GSExploreError(f"{source}, line {n}: the label {label!r} must be one word of at most 64 "
                                 "characters (write 'KEY name', e.g. 'x8f2... ana')")
        pairs.append((key, label))
    return _name(pairs, prefix)


def _name(pairs: Iterable[tuple[str, str | None]], prefix: str) -> dict[str, str]:
    pairs = list(pairs)
    taken = {lab for _, lab in pairs if lab}
    out: dict[str, str] = {}
    i = 0
    for key, label in pairs:
        if label is None:
            i += 1
            while f"{prefix}-{i}" in taken:
                i += 1
            label = f"{prefix}-{i}"
        out[key] = label  # two keys may share a label: one student on two machines
    return out


def read_key_file(path: str | os.PathLike[str], *, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """``{key: label}`` from a key file (see `parse_key_lines`)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise GSExploreError(f"cannot read the API key file {path}: {e.strerror or e}") from None
    return parse_key_lines(text, str(path), prefix=prefix)


@dataclass(frozen=True)
class Caller:
    """Who sent one request: the name it goes by, and whether it holds an admin key."""

    label: str
    admin: bool = False
    keyed: bool = False  # whether the label comes from a key (then ``user`` cannot change it)

    def sender(self, user: str | None) -> str:
        """The name of the request's sender: the key's label, else the body's ``user``, else `ANONYMOUS`."""
        if self.keyed:
            return self.label
        return (user or "").strip()[:64] or self.label


@dataclass
class Roster:
    """The server's keys: students' ``{key: label}`` and the teacher's admin ``{key: label}``."""

    students: dict[str, str] = field(default_factory=dict)
    admins: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, keys: Mapping[str, str] | Iterable[str] | None,
           admins: Mapping[str, str] | Iterable[str] | None = None) -> Roster:
        """A roster from ``{key: label}`` maps or plain key collections (labelled alumno-N / docente)."""
        return cls(_as_map(keys, DEFAULT_PREFIX), _as_map(admins, TEACHER))

    @property
    def keys(self) -> set[str]:
        """Every key that may generate (students' and admins')."""
        return set(self.students) | set(self.admins)

    @property
    def open(self) -> bool:
        """No keys at all: anyone who reaches the server may use it (loopback only)."""
        return not self.students and not self.admins

    def identify(self, authorization: str) -> Caller:
        """The caller of a request with this ``Authorization`` header; 401 when keys are on and it has none."""
        if self.open:
            return Caller(ANONYMOUS)
        scheme, _, token = authorization.partition(" ")
        token_b = token.strip().encode()
        found: Caller | None = None
        for table, admin in ((self.students, False), (self.admins, True)):
            for k, label in table.items():  # compare with every key, in constant time each
                if hmac.compare_digest(token_b, k.encode()) and scheme.lower() == "bearer":
                    found = Caller(label, admin=admin, keyed=True)
        if found is None:
            raise Reject(401, "missing or invalid API key: send the header 'Authorization: Bearer <key>'",
                         "AuthenticationError", headers={"WWW-Authenticate": "Bearer"})
        return found

    def require_admin(self, authorization: str) -> Caller:
        """The caller when it holds an admin key (or the server has no keys at all); else 401 or 403."""
        if self.open:
            return Caller(TEACHER, admin=True)
        if not self.admins:
            raise Reject(403, "the class view needs an admin key: start the server with --admin-key-file FILE",
                         "PermissionDeniedError")
        caller = self.identify(authorization)
        if not caller.admin:
            raise Reject(403, "the class view is for the teacher: this key is a student's "
                              "(the teacher's keys are in --admin-key-file)", "PermissionDeniedError")
        return caller


def _as_map(keys: Mapping[str, str] | Iterable[str] | None, prefix: str) -> dict[str, str]:
    if keys is None:
        return {}
    if isinstance(keys, Mapping):
        return {k: v for k, v in keys.items() if k}
    plain = sorted(k for k in keys if k)
    if prefix == TEACHER and len(plain) == 1:
        return {plain[0]: TEACHER}
    return _name(((k, None) for k in plain), prefix)
