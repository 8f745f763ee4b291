"""``gsexplore serve --make-keys N``: fresh labelled keys for a class, and a printable sheet to hand out.

The key file (``KEY label`` a line, readable by its owner only) is what
``--api-key-file`` reads. Beside it, ``<file>.html`` has one card per student
(key, label, the server's URL and the three notebook lines that connect), to
print and cut. With ``admin_path`` (absent), one admin key for the teacher is
written there (what ``--admin-key-file`` reads); it is never on the sheet.
"""

from __future__ import annotations

import html
import os
import secrets
from pathlib import Path

from ..errors import GSExploreError
from .identity import DEFAULT_PREFIX, TEACHER

__all__ = ["make_keys", "sheet_path", "notebook_lines", "KEY_BYTES"]

#: Random bytes in each key (URL-safe base64: 32 characters).
KEY_BYTES = 24


def sheet_path(key_file: str | os.PathLike[str]) -> Path:
    """Where the printable sheet of ``key_file`` goes: beside it, ``.html``."""
    p = Path(key_file)
    return p.with_name(p.name + ".html")


def notebook_lines(url: str, key: str) -> list[str]:
    """The three lines a student types in a notebook to use the class's server."""
    return ["import gsexplore as gs",
            f'b = gs.RemoteBackend("{url}", api_key="{key}")',
            'b.chat("Hola, ¿quién sos?")']


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (keys); refuses to overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise GSExploreError(f"{path} already exists: --make-keys writes fresh keys to a new file (remove it, "
                             "or serve the existing keys with --api-key-file alone)") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def make_keys(n: int, key_file: str | os.PathLike[str], url: str, *,
              admin_path: str | os.PathLike[str] | None = None, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """Write ``n`` fresh keys labelled ``prefix-1..n`` to ``key_file`` and the sheet beside it; returns
    ``{key: label}``. ``admin_path``, when given and absent, gets one teacher key."""
    if n < 1:
        raise GSExploreError(f"--make-keys must be at least 1 (got {n})")
    keys: dict[str, str] = {}
    while len(keys) < n:
        keys.setdefault(secrets.token_urlsafe(KEY_BYTES), f"{prefix}-{len(keys) + 1}")
    admin: str | None = None
    if admin_path is not None and not Path(admin_path).exists():
        admin = secrets.token_urlsafe(KEY_BYTES)
        _write_private(Path(admin_path), f"# the teacher's key (gsexplore serve --admin-key-file)\n{admin} {TEACHER}\n")
    body = "".join(f"{k} {label}\n" for k, label in keys.items())
    _write_private(Path(key_file), f"# gsexplore serve --api-key-file: one 'KEY label' a line\n{body}")
    _write_private(sheet_path(key_file), _sheet(keys, url))
    return keys


def _sheet(keys: dict[str, str], url: str) -> str:
    base = url.removesuffix("/v1")
    cards = []
    for key, label in keys.items():
        code = html.escape("\n".join(notebook_lines(url, key)))
        cards.append(f"<section class='card'><h2>{html.escape(label)}</h2>"
                     f"<p>Servidor: <code>{html.escape(url)}</code></p>"
                     f"<p>Tu clave: <code>{html.escape(key)}</code></p>"
                     f"<p>En un notebook:</p><pre>{code}</pre></section>")
    # the teacher's key stays in its own file: this sheet is cut up and handed out
    teacher = f"<p>Vista de la clase (docente): <code>{html.escape(base)}/class</code></p>"
    css = ("body{font-family:system-ui,sans-serif;margin:1cm} .card{border:1px dashed #888;padding:.4cm;"
           "margin:.3cm 0;break-inside:avoid} h2{margin:0 0 .2cm;font-size:14pt} pre,code{font-size:10pt}")
    return (f"<!doctype html><html lang='es'><head><meta charset='utf-8'><title>Claves de la clase</title>"
            f"<style>{css}</style></head><body><h1>Claves de la clase</h1>{teacher}{''.join(cards)}</body></html>\n")
