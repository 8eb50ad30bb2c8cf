"""The package's imports go one way: no cycle, no upward import, and the emulator reaches none of
the client's logic, not even through another module.

Every `import` counts, at module level and inside functions (a function-level import hides a
cycle from Python, not from this test), and so do the names `jitctl/__init__.py` loads lazily.
A module's parent packages run first on import but are not counted as its imports (a package
and its submodules would otherwise always form a cycle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jitctl"

# Layers, from the top. A module belongs to the first layer one of whose prefixes it matches
# (a prefix matches the module itself and its submodules); the rest is `root`: pure logic
# (NSG evaluation, policy merge, parsing), the ports (Gateway protocols) and small system
# adapters (launch, relay, public IP, clouds).
LAYERS: dict[str, tuple[str, ...]] = {
    "api": ("jitctl.__init__", "jitctl.__main__"),  # the library's lazy names, `python -m`
    "cli": ("jitctl.cli",),
    "app": (
        "jitctl.app",
        "jitctl.demo",
        "jitctl.brokerdemo",
    ),  # wires the services to Azure or the emulator
    "broker": ("jitctl.broker",),  # approvals: rules, lifecycle, store (SQLAlchemy)
    "services": ("jitctl.services",),
    "arm": ("jitctl.arm",),  # the only layer that imports azure-mgmt
    "emulator": ("jitctl.emulator",),
    "root": (),
}
# What each layer may import (its own layer included); everything else is upward or sideways.
MAY_IMPORT: dict[str, set[str]] = {
    "api": {"api", "cli", "app", "services", "root"},
    "cli": {"cli", "app", "broker", "services", "emulator", "root"},
    "app": {"app", "broker", "services", "arm", "emulator", "root"},
    "broker": {"broker", "services", "root"},
    "services": {"services", "root"},
    "arm": {"arm", "root"},
    "emulator": {"emulator", "root"},
    "root": {"root"},
}
# The root modules the emulator may reach, directly or through each other: plumbing, no
# decision. Its verdicts (what a source covers, how a policy merges, which rule wins) must be
# its own, or a shared bug would pass every test (moto's rule).
EMULATOR_MAY_USE = {
    "jitctl.clock",
    "jitctl.errors",
    "jitctl.files",
    "jitctl.ids",
    "jitctl.textsafe",
}


def module_name(path: Path, package: Path) -> str:
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def package_modules(package: Path) -> dict[str, Path]:
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def _imported(node: ast.AST, here: str, is_package: bool, known: set[str]) -> Iterable[str]:
    """The package's modules an import statement names (`from a import b`: a.b when b is a
    module, else a)."""
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the package that holds `here`
            parts = here.split(".") if is_package else here.split(".")[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, *([node.module] if node.module else [])])
        for alias in node.names:
            full = f"{base}.{alias.name}"
            yield full if full in known else base


def _lazy_names(tree: ast.Module) -> Iterable[str]:
    """The modules of a `_WHERE = {"Name": "jitctl.x"}` table (jitctl/__init__.py's lazy names)."""
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_WHERE" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            for value in node.value.values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    yield value.value


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its text."""
    modules = package_modules(package)
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found = {
            target
            for node in ast.walk(tree)
            for target in _imported(node, name, path.name == "__init__.py", known)
        }
        found.update(_lazy_names(tree))
        prefix = package.name
        graph[name] = {
            m for m in found if (m == prefix or m.startswith(prefix + ".")) and m != name
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def layer_of(module: str) -> str:
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            bare = prefix.removesuffix(".__init__")
            if prefix.endswith(".__init__") and module == bare:
                return layer
            if not prefix.endswith(".__init__") and (
                module == prefix or module.startswith(prefix + ".")
            ):
                return layer
    return "root"


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{src} ({layer_of(src)}) imports {dst} ({layer_of(dst)})"
        for src, targets in graph.items()
        for dst in targets
        if layer_of(dst) not in MAY_IMPORT[layer_of(src)]
    )


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), set()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


# --- the package -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = import_graph(PACKAGE)
    assert len(found) > 80 and "jitctl.emulator.backend" in found  # it read the package
    return found


def test_the_package_has_no_import_cycle(graph):
    assert cycles(graph) == []


def test_no_module_imports_a_layer_above_or_beside_its_own(graph):
    assert upward(graph) == []


def test_every_layer_has_modules(graph):
    assert {layer_of(m) for m in graph} == set(LAYERS)


def test_the_emulator_reaches_no_client_logic_even_through_other_modules(graph):
    emulator = [m for m in graph if layer_of(m) == "emulator"]
    reached = {m for e in emulator for m in reachable(graph, e) if layer_of(m) != "emulator"}
    assert reached <= EMULATOR_MAY_USE, sorted(reached - EMULATOR_MAY_USE)


def test_the_services_and_root_import_neither_click_nor_azure():
    modules = package_modules(PACKAGE)
    bad = []
    for name, path in modules.items():
        if layer_of(name) not in ("services", "root"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            bad += [f"{name}: {n}" for n in names if n.split(".")[0] in ("click", "azure")]
    assert bad == []


# --- the checks themselves see what they must --------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "jitctl"
    for rel, text in {"__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
        path.write_text(text)
    return root


def test_a_cycle_hidden_in_a_function_is_found(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "services/writes.py": "def f():\n    from jitctl.services.verify import Clock\n",
            "services/verify.py": "from jitctl.services import writes\n",
            "services/query.py": "from . import writes\n",
        },
    )
    found = import_graph(pkg)
    assert found["jitctl.services.query"] == {"jitctl.services.writes"}  # relative, resolved
    assert cycles(found) == [["jitctl.services.verify", "jitctl.services.writes"]]


def test_an_upward_import_in_a_function_is_found(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "emulator/statefile.py": "def f():\n    from jitctl.app import state_file\n",
            "app.py": "",
            "nsgeval.py": "def g():\n    import jitctl.services.verify\n",
            "services/verify.py": "",
        },
    )
    assert upward(import_graph(pkg)) == [
        "jitctl.emulator.statefile (emulator) imports jitctl.app (app)",
        "jitctl.nsgeval (root) imports jitctl.services.verify (services)",
    ]


def test_the_emulators_reach_follows_other_modules(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "emulator/backend.py": "from jitctl.ids import name_of\n",
            "ids.py": "from jitctl.parsing import check_vm_name\n",
            "parsing.py": "",
        },
    )
    assert reachable(import_graph(pkg), "jitctl.emulator.backend") == {
        "jitctl.ids",
        "jitctl.parsing",
    }


def test_the_lazy_names_of_the_package_count(tmp_path):
    pkg = _package(tmp_path, {"__init__.py": '_WHERE = {"App": "jitctl.app"}\n', "app.py": ""})
    assert import_graph(pkg)["jitctl"] == {"jitctl.app"}
