"""Names in a leaderboard come from files a user (or anyone who hands them a runs folder) controls: class
names, protocol files, notes. Every format shows them as inert text: control and bidi characters removed
(U+202E would reverse what follows), CSV cells that a spreadsheet would run as a formula prefixed with `'`,
Markdown links, emphasis and raw HTML escaped, HTML escaped (the page also has a CSP).

>>> csv_cell("=HYPERLINK(\\"http://x\\")")
'\\'=HYPERLINK("http://x")'
>>> plain("abc\\u202edef")
'abcdef'
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")  # links and images need [ ], emphasis * _ ~, HTML < >


def plain(text: Any) -> str:
    """`text` as a string with control (Cc) and format (Cf: bidi overrides, zero-width) characters removed;
    line breaks and tabs become spaces."""
    s = str(text)
    return "".join(" " if ch in "\n\r\t" else ch for ch in s
                   if ch in "\n\r\t" or unicodedata.category(ch) not in ("Cc", "Cf"))


def csv_cell(value: Any) -> Any:
    """A CSV value: numbers as they are; text made plain and, where it starts like a formula, prefixed
    with `'` (the OWASP advice for CSV injection)."""
    if not isinstance(value, str):
        return value
    s = plain(value)
    return "'" + s if s.startswith(_FORMULA_START) else s


def md_text(text: Any) -> str:
    """Markdown-safe text: every character that can make a link or image ([ ]), emphasis, code, raw HTML or a
    table cell escaped with a backslash; bare URLs broken so they do not autolink."""
    s = _MD_SPECIAL.sub(r"\\\1", plain(text)).replace("&", "&amp;")
    return s.replace("://", "\\://").replace("www.", "www\\.")


def html_text(text: Any) -> str:
    """HTML-escaped plain text (quotes included, so it is safe in attributes too)."""
    return html.escape(plain(text), quote=True)


def json_value(value: Any) -> Any:
    """Every string in a JSON-able value made plain (recursively)."""
    if isinstance(value, str):
        return plain(value)
    if isinstance(value, dict):
        return {plain(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value
