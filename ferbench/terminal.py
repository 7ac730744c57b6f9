"""What ferbench prints to a terminal through rich: text that is never read as rich markup, so user and file text
(paths, class names, config keys, messages) shows as typed: `/tmp/[red]x[/red].h5` stays that, `[link=...]` is
no link, `[raw]` in a message stays. Styles are given apart from the text, never written into it."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text


def as_text(*parts: str | tuple[str, str]) -> Text:
    """One piece of output: each part is literal text, or (literal text, rich style)."""
    return Text.assemble(*parts)


def text_cells(*values: object) -> list[Text]:
    """A table row's cells as literal text (`table.add_row(*text_cells(a, b))`)."""
    return [v if isinstance(v, Text) else Text(str(v)) for v in values]


def as_markup(text: str) -> str:
    """`text` escaped for the few rich inputs that take only a markup string (a progress task's description)."""
    return escape(text)
