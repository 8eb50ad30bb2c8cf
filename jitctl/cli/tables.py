"""Tables and colors for people (rich for colors, imported only here, only when used).

Tables fit the terminal's width (100 columns when stdout is not a terminal and COLUMNS is not
set): name columns are cut in the middle (both ends stay), then the last column wraps.
Context columns whose value is the same in every row (the resource group, the region, the
policy) are folded: printed once above the table. JSON is never shortened or folded.

Colors only on a terminal and never with NO_COLOR (https://no-color.org): allow green, deny
red, warnings yellow, errors red. Text from Azure or users reaches rich as plain `Text`, never
as markup, after control characters are escaped.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import IO

DEFAULT_WIDTH = 100
FOLDABLE = ("SUBSCRIPTION", "GROUP", "REGION", "POLICY")
MIDDLE = ("NAME", "RULE", "POLICY", "VM")  # names: cut in the middle, both ends stay
NAME_LIMIT = 40  # a name column (and a rule name in a line) is never wider in a table


def width() -> int:
    """The width tables fit in: the terminal's, else COLUMNS, else 100."""
    if sys.stdout.isatty():
        return max(20, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)
    columns = os.environ.get("COLUMNS", "")
    return max(20, int(columns)) if columns.isdigit() else DEFAULT_WIDTH


def shorten_middle(text: str, limit: int) -> str:
    """`text` in at most `limit` characters: its start and its end around an ellipsis."""
    if len(text) <= limit:
        return text
    if limit <= 3:
        return text[:limit]
    head = (limit - 1) // 2 + (limit - 1) % 2
    return text[:head] + "\u2026" + text[len(text) - (limit - 1 - head) :]


def fold(
    header: Sequence[str], rows: Sequence[Sequence[str]]
) -> tuple[list[tuple[str, str]], list[str], list[list[str]]]:
    """Context columns with one value in every row leave the table, for a line above it."""
    keep = [
        i
        for i, name in enumerate(header)
        if not (name in FOLDABLE and rows and len({r[i] for r in rows}) == 1)
    ] or list(range(len(header)))  # a table of context columns only stays a table
    folded = [(header[i], rows[0][i]) for i in range(len(header)) if i not in keep]
    return folded, [header[i] for i in keep], [[r[i] for i in keep] for r in rows]


def _fit(header: list[str], rows: list[list[str]], limit: int) -> list[list[str]]:
    """Name columns cut in the middle to NAME_LIMIT, then widest first until the table fits in
    `limit`."""
    names = [i for i, h in enumerate(header) if h in MIDDLE]
    rows = [
        [shorten_middle(c, NAME_LIMIT) if j in names else c for j, c in enumerate(r)] for r in rows
    ]
    gap = 2 * (len(header) - 1)
    widths = [max(len(c) for c in [h, *(r[i] for r in rows)]) for i, h in enumerate(header)]
    while sum(widths) + gap > limit and names:
        i = max(names, key=lambda j: widths[j])
        floor = max(len(header[i]), 12)
        if widths[i] <= floor:
            names.remove(i)
            continue
        widths[i] = max(floor, widths[i] - (sum(widths) + gap - limit))
        rows = [
            [shorten_middle(c, widths[i]) if j == i else c for j, c in enumerate(r)] for r in rows
        ]
    return rows


def layout(rows: Sequence[Sequence[str]], header: Sequence[str], limit: int | None = None) -> str:
    """Rows (already escaped) as a table of at most `limit` columns (default: width()). No
    column is ever dropped: when the others leave too little room, the last one wraps (and
    when even that cannot help, the line is longer rather than a value lost)."""
    limit = limit or width()
    folded, cols, body = fold(list(header), [list(r) for r in rows])
    body = _fit(cols, body, limit)
    widths = [max(len(c) for c in [h, *(r[i] for r in body)]) for i, h in enumerate(cols)]
    lead = sum(widths[:-1]) + 2 * (len(cols) - 1)
    room = max(limit - lead, len(cols[-1]), 12)
    lines = []
    for row in [cols, *body]:
        cells = "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=False))
        pieces = textwrap.wrap(row[-1], room, break_on_hyphens=False) or [""]
        prefix = cells + "  " if len(cols) > 1 else ""
        lines.append((prefix + pieces[0]).rstrip())
        lines += [" " * len(prefix) + p for p in pieces[1:]]
    heading = "  ".join(f"{name}: {value}" for name, value in folded)
    return "\n".join(([heading] if heading else []) + lines)


def colored(stream: IO[str]) -> bool:
    """Colors on this stream: a terminal, and no NO_COLOR (any value) in the environment."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


# What a table or a verdict says, and its color: first match wins where matches overlap.
_PAINT = [
    (r"NOT EFFECTIVE|(?<![\w-])(?:JIT )?(?i:deny|denied)(?![\w-])|no rule matched", "red"),
    (r"EFFECTIVE|(?<![\w-])(?:JIT )?(?i:allow|allowed)(?![\w-])", "green"),
    (r"(?m)^\s*warning:.*$", "yellow"),
]


def paint(text: str) -> str:
    """`text` (already escaped) with ANSI colors for allow, deny and warnings."""
    from rich.text import Text

    styled = Text(text)
    taken: list[tuple[int, int]] = []
    for pattern, style in _PAINT:
        for m in re.finditer(pattern, text):
            if not any(m.start() < end and start < m.end() for start, end in taken):
                styled.stylize(style, m.start(), m.end())
                taken.append((m.start(), m.end()))
    return _ansi(styled)


def paint_line(text: str, style: str) -> str:
    """One stderr line in one color (errors red, warnings yellow)."""
    from rich.text import Text

    return _ansi(Text(text, style=style))


def _ansi(styled: object) -> str:
    from rich.console import Console

    out = io.StringIO()
    console = Console(
        file=out,
        force_terminal=True,
        color_system="standard",
        soft_wrap=True,
        markup=False,
        highlight=False,
        emoji=False,
    )
    console.print(styled, end="")
    return out.getvalue()
