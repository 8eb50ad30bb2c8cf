"""README.md's Design section tells the truth: its module list is the package's (generated from
the docstrings by scripts/gen_design.py), and every module or path its prose names exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load_gen_design() -> Any:
    spec = importlib.util.spec_from_file_location("gen_design", ROOT / "scripts" / "gen_design.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_design = load_gen_design()


def design_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Design\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end > 0 else len(readme)]


def test_the_readme_lists_every_module_and_no_other():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert gen_design.differences(readme) == []  # else: python scripts/gen_design.py


def test_every_module_has_a_docstring_to_list():
    missing = [
        str(p.relative_to(ROOT))
        for group in gen_design.modules().values()
        for p in group
        if not gen_design.first_sentence(p)
    ]
    assert missing == []


def test_every_path_and_module_the_prose_names_exists():
    prose = design_section().split(gen_design.BEGIN)[0]
    names = re.findall(r"`([\w./]+)`", prose)
    paths = [n for n in names if "/" in n]
    modules = [n for n in names if "/" not in n and n.isidentifier()]
    assert len(paths) >= 4 and len(modules) >= 5  # it read the prose
    assert [p for p in paths if not (ROOT / p).exists()] == []
    package = {p.stem for p in (ROOT / "jitctl").rglob("*.py")}
    assert [m for m in modules if m.islower() and m not in package] == []


def _readme_for(package: Path) -> str:
    return f"# x\n\n## Design\n\n{gen_design.generate(package)}\n"


def test_a_module_gone_or_new_is_named(tmp_path):
    pkg = tmp_path / "jitctl"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""The package."""\n')
    (pkg / "cli" / "__init__.py").write_text('"""The CLI. More."""\n')
    (pkg / "cli" / "render.py").write_text('"""The one renderer."""\n')
    (pkg / "gone.py").write_text('"""Soon gone."""\n')
    readme = _readme_for(pkg)
    assert gen_design.differences(readme, pkg) == []
    (pkg / "gone.py").unlink()
    (pkg / "cli" / "shapes.py").write_text('"""JSON shapes."""\n')
    assert gen_design.differences(readme, pkg) == [
        "README names gone.py, which does not exist",
        "README does not name cli/shapes.py",
    ]


def test_a_docstring_changed_is_seen(tmp_path):
    pkg = tmp_path / "jitctl"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""The package."""\n')
    (pkg / "clock.py").write_text('"""Clocks. The system one and a fake."""\n')
    readme = _readme_for(pkg)
    assert "- `clock.py`: Clocks.\n" in readme  # the first sentence only
    (pkg / "clock.py").write_text('"""The one Clock protocol."""\n')
    assert gen_design.differences(readme, pkg) == ["a module's line differs from its docstring"]
