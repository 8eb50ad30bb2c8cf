"""Read a policy file's YAML within bounds: size, encoding, nesting, no aliases, no duplicate keys.

A policy file is a few kilobytes of plain UTF-8. Anything else is refused with one line naming
the file's line, before any of it is used: a 1 MiB file of aliases can expand to gigabytes
("billion laughs"), a deeply nested one exhausts the recursion limit, and a UTF-16 or binary
file would otherwise surface as a crash.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32

_BOMS = (  # UTF-32 first: its little-endian BOM starts with UTF-16's
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


class YamlProblem(Exception):
    """What is wrong with a file, and where (1-based line)."""

    def __init__(self, line: int, key: str, message: str) -> None:
        super().__init__(message)
        self.line, self.key, self.message = line, key, message


def _line_at(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def read_policy_text(path: Path) -> str:
    """The file's text: at most MAX_BYTES of UTF-8 (a UTF-8 BOM is allowed), no NUL byte."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise YamlProblem(1, "(file)", f"cannot be read: {err.strerror or err}") from None
    if len(raw) > MAX_BYTES:
        raise YamlProblem(
            1, "(file)", "is larger than 1 MiB; a policy file is a few kilobytes of YAML"
        )
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            raise YamlProblem(1, "(file)", f"is {encoding}; save it as UTF-8")
    raw = raw.removeprefix(codecs.BOM_UTF8)
    nul = raw.find(b"\0")
    if nul >= 0:
        raise YamlProblem(_line_at(raw, nul), "(file)", "holds a NUL byte: not a YAML text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise YamlProblem(
            _line_at(raw, err.start),
            "(file)",
            f"is not UTF-8 (byte 0x{raw[err.start]:02x}); save it as UTF-8",
        ) from None


def _loader_base() -> type:
    """SafeLoader, but events from libyaml when PyYAML has it (its pure-Python scanner reads
    about 1.4 MB a second: 0.8 s for the 20 files that `policy export` writes of 10,000 VMs).
    The composing stays in Python, so the checks below (aliases, depth, duplicate keys) see
    every node whichever parser runs."""
    import yaml
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    try:
        from yaml.cyaml import CParser  # type: ignore[attr-defined]  # not in the stubs
    except ImportError:  # PyYAML built without libyaml
        return yaml.SafeLoader

    class FastSafeLoader(Composer, CParser, SafeConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

    return FastSafeLoader


def compose_bounded(path: Path) -> tuple[Any, Any]:
    """The file's node tree (for lines) and its data, or YamlProblem."""
    import yaml

    text = read_policy_text(path)

    class Loader(_loader_base()):  # type: ignore[misc]
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise YamlProblem(
                    mark.line + 1,
                    "yaml",
                    "aliases (*name) are not allowed in policy files; write the value out",
                )
            self.depth += 1
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlProblem(
                    mark.line + 1, "yaml", f"nested more than {MAX_DEPTH} levels deep"
                )
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def compose_mapping_node(self, anchor: Any) -> Any:
            node = super().compose_mapping_node(anchor)
            seen: set[Any] = set()
            for key, _ in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise YamlProblem(
                            key.start_mark.line + 1, "yaml", f"key '{key.value}' appears twice"
                        )
                    seen.add(key.value)
            return node

    try:
        loader = Loader(text)
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        what = str(err.problem or err)
        if what.startswith("but ") and err.context:  # "but found another document"
            what = f"{err.context} {what}"
        raise YamlProblem((mark.line + 1) if mark else 1, "yaml", what) from None
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        char = err.character if isinstance(err.character, int) else ord(err.character)
        raise YamlProblem(line, "yaml", f"holds the control character 0x{char:02x}") from None
    except ValueError:  # Python refuses to convert integers of more than 4300 digits
        raise YamlProblem(1, "yaml", "holds a number too long to be a number") from None
    except yaml.YAMLError as err:
        raise YamlProblem(1, "yaml", str(err).splitlines()[0]) from None
    loader.dispose()
    return node, data
