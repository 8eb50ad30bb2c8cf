"""Tables and colors for people (rich for colors, imported only here, only when used).

Tables fit the terminal's width (100 columns when stdout is not a terminal and COLUMNS is not
set): free text wraps, name columns are cut in the middle (both ends stay), then every other
cell wraps between words.
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
from collections.abc import Sequence
from typing import IO

DEFAULT_WIDTH = 100
FOLDABLE = ("SUBSCRIPTION", "GROUP", "REGION", "POLICY")
# Names and ids: cut in the middle, both ends stay (whole in JSON).
MIDDLE = ("NAME", "RULE", "POLICY", "VM", "GROUP", "SUBSCRIPTION")
FREE = ("JUSTIFICATION", "GRANTS", "FINDING", "SOURCES", "NOTE")  # prose: wraps first
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


# A piece ends after a space, '@', '/', ',' or a '-' before no digit (dates and spans stay whole).
_BREAK = re.compile(r"(?:[^\s@/,-]|-(?=\d))*(?:[@/,]+|-+|\s+|$)")


def wrap(text: str, limit: int) -> list[str]:
    """`text` in lines of at most `limit` characters, broken after spaces, '@', '/', ',' or
    '-' (an email, a CIDR list, a resource name), a piece longer than a line cut where it must.
    Nothing is lost."""
    lines, line = [], ""
    for piece in (p for p in _BREAK.findall(text) if p):
        while len(piece) > limit and not line.strip():
            lines.append(piece[:limit])
            piece = piece[limit:]
        if len((line + piece).rstrip()) > limit:
            lines.append(line.rstrip())
            line = piece.lstrip() if piece.isspace() else piece
            while len(line.rstrip()) > limit:
                lines.append(line[:limit])
                line = line[limit:]
        else:
            line += piece
    return [*lines, line.rstrip()] if line.strip() or not lines else lines


def fit_line(line: str, limit: int) -> list[str]:
    """A line of prose in lines of at most `limit` characters: its indentation kept, the
    lines that follow indented four more."""
    if len(line) <= limit:
        return [line]
    body = line.lstrip(" ")
    lead = " " * (len(line) - len(body))
    first = wrap(body, max(limit - len(lead), 8))[0]
    rest = wrap(body[len(first) :].lstrip(), max(limit - len(lead) - 4, 8))
    return [lead + first, *(lead + "    " + r for r in rest if r)]


def _longest_piece(text: str) -> int:
    return max((len(p.rstrip()) for p in _BREAK.findall(text)), default=0)


def _stages(header: list[str], rows: list[list[str]]) -> list[tuple[list[int], list[int]]]:
    """How columns give way, in order: (columns, their floor at that stage). Free text (the
    last column, justifications, findings) wraps first, then names are cut in the middle,
    then every column wraps between words, then names and text go down to their headers."""
    n = len(header)
    names = [i for i in range(n) if header[i] in MIDDLE]
    free = [i for i in range(n) if header[i] in FREE or (i == n - 1 and i not in names)]
    other = [i for i in range(n) if i not in names]
    head = [len(h) for h in header]
    piece = [max((_longest_piece(r[i]) for r in rows), default=0) for i in range(n)]
    return [
        (free, [max(head[i], 20) for i in range(n)]),
        (names, [max(head[i], 16) for i in range(n)]),
        (other, [max(head[i], piece[i], 12 if i in free else 0) for i in range(n)]),
        (names, [max(head[i], 10) for i in range(n)]),
        (other, [max(head[i], piece[i]) for i in range(n)]),
        (other, head),
    ]


def _widths(
    header: list[str], rows: list[list[str]], limit: int, stages: int = 6
) -> tuple[list[int], bool]:
    """Column widths for `limit`, each of the first `stages` stages taking from its widest
    column first; and whether they fit."""
    widths = [max(len(c) for c in [h, *(r[i] for r in rows)]) for i, h in enumerate(header)]
    gap = 2 * (len(header) - 1)
    for columns, floor in _stages(header, rows)[:stages]:
        while sum(widths) + gap > limit:
            over = [i for i in columns if widths[i] > floor[i]]
            if not over:
                break
            i = max(over, key=lambda j: widths[j])
            widths[i] = max(floor[i], widths[i] - (sum(widths) + gap - limit))
    return widths, sum(widths) + gap <= limit


def _grid_lines(cols: list[str], body: list[list[str]], widths: list[int]) -> list[list[str]]:
    """Each row's lines: name cells cut in the middle, the others wrapped."""
    names = {i for i, h in enumerate(cols) if h in MIDDLE}
    grid = [
        [
            [shorten_middle(c, w)] if i in names else wrap(c, w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        for row in [cols, *body]
    ]
    widths = [max(len(line) for row in grid for line in row[i]) for i in range(len(cols))]
    out = []
    for cells in grid:
        out.append(
            [
                "  ".join(
                    (c[k] if k < len(c) else "").ljust(w)
                    for c, w in zip(cells, widths, strict=True)
                ).rstrip()
                for k in range(max(len(c) for c in cells))
            ]
        )
    return out


def layout(
    rows: Sequence[Sequence[str]],
    header: Sequence[str],
    limit: int | None = None,
    aside: Sequence[str] = (),
) -> str:
    """Rows (already escaped) as a table of at most `limit` columns (default: width()). Name
    columns are cut in the middle (never wider than NAME_LIMIT), other cells wrap. When the
    table cannot fit unless cells other than prose wrap, the `aside` columns leave it for an
    indented line under each row ("requestor: ...; justification: ..."). No column is ever dropped and no other
    value cut (when even that cannot fit, the line is longer)."""
    limit = limit or width()
    folded, cols, body = fold(list(header), [list(r) for r in rows])
    body = [
        [shorten_middle(c, NAME_LIMIT) if h in MIDDLE else c for h, c in zip(cols, r, strict=True)]
        for r in body
    ]
    widths, fits = _widths(cols, body, limit, stages=2)
    side = [i for i, h in enumerate(cols) if h in aside and not fits]
    if side and len(side) < len(cols):
        keep = [i for i in range(len(cols)) if i not in side]
        notes = ["; ".join(f"{cols[i].lower()}: {r[i]}" for i in side if r[i] != "-") for r in body]
        cols, body = [cols[i] for i in keep], [[r[i] for i in keep] for r in body]
        widths, _ = _widths(cols, body, limit)
        head, *grid = _grid_lines(cols, body, widths)
        lines = head + [
            line
            for cells, note in zip(grid, notes, strict=True)
            for line in cells + (fit_line("  " + note, limit) if note else [])
        ]
    else:
        widths, _ = _widths(cols, body, limit)
        lines = [line for cells in _grid_lines(cols, body, widths) for line in cells]
    return "\n".join(_heading([f"{name}: {value}" for name, value in folded], limit) + lines)


def _heading(items: list[str], limit: int) -> list[str]:
    """The folded columns, as many to a line as fit."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) <= limit:
            lines[-1] += "  " + item
        else:
            lines.extend(fit_line(item, limit))
    return lines


def colored(stream: IO[str]) -> bool:
    """Colors on this stream: a terminal, and no NO_COLOR (any value) in the environment."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and "NO_COLOR" not in os.environ


# What a table or a verdict says, and its color: first match wins where matches overlap.
_PAINT = [
    (r"(?m)^( *)warning:.*(?:\n\1    .*)*", "yellow"),  # whole, with its wrapped lines
    (r"NOT EFFECTIVE|(?<![\w-])(?:JIT )?(?i:deny|denied)(?![\w-])|no rule matched", "red"),
    (r"EFFECTIVE|(?<![\w-])(?:JIT )?(?i:allow|allowed)(?![\w-])", "green"),
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
