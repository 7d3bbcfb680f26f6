"""The package's import graph, read from the source with ``ast``: no cycles (counting imports
inside functions too, since a cycle hidden in a function still couples two modules and fails
with "partially initialized module" the day the import moves up), and the torch-free core
never imports a torch-only module or torch itself when it is loaded, while torch-only code
refuses to import without torch, naming the extra to install."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import memesearch
from memesearch.ml.families import TORCH_ONLY_MODULES

PACKAGE_DIR = Path(memesearch.__file__).parent
TORCH_PACKAGES = {"torch", "transformers", "torchvision", "optimum"}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    at_import_time: bool  # False: the import runs inside a function


def module_files() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imports(tree: ast.AST):
    """(node, inside a function?) for every import statement."""
    stack = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            stack.append((child, nested))


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def import_edges() -> tuple[dict[str, Path], list[Edge], list[Edge]]:
    """(modules, edges between memesearch modules, edges to third-party top-level packages)."""
    modules = module_files()

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    internal, external = [], []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, in_function in _imports(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = _absolute(module, path.name == "__init__.py", node)
                # `from pkg import sub` imports the submodule when there is one.
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for name in names:
                if name.split(".")[0] != "memesearch":
                    external.append(Edge(module, name.split(".")[0], not in_function))
                elif (target := owner(name)) and target != module:
                    internal.append(Edge(module, target, not in_function))
    return modules, internal, external


def cycles(nodes, edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {node: set() for node in nodes}
    for edge in edges:
        graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def is_torch_only(module: str) -> bool:
    parts = module.split(".")
    if parts[:3] != ["memesearch", "ml", "families"] or len(parts) < 5:
        return False
    return parts[3] == "common" or parts[4] in TORCH_ONLY_MODULES


def test_the_helpers_see_a_cycle_and_the_torch_only_modules():
    edges = [Edge("a", "b", False), Edge("b", "c", True), Edge("c", "a", True), Edge("c", "d", True)]
    assert cycles("abcd", edges) == [["a", "b", "c"]]
    modules, internal, _ = import_edges()
    assert "memesearch.ml.families.smolvlm.onnx_backend" in modules
    assert Edge("memesearch.ml.families.smolvlm.onnx_backend", "memesearch.ml.onnx_runtime.session", True) in internal
    assert is_torch_only("memesearch.ml.families.clip.export") and is_torch_only("memesearch.ml.families.common.export")
    assert not is_torch_only("memesearch.ml.families.clip.onnx_backend") and not is_torch_only("memesearch.ml.families")


def test_the_package_has_no_import_cycle():
    modules, internal, _ = import_edges()
    assert cycles(modules, internal) == []


def test_the_core_never_imports_torch_only_code_when_it_loads():
    modules, internal, external = import_edges()
    core = {module for module in modules if not is_torch_only(module)}
    into_torch_only = [e for e in internal if e.source in core and is_torch_only(e.target) and e.at_import_time]
    assert into_torch_only == []
    torch_imports = [e for e in external if e.source in core and e.target in TORCH_PACKAGES and e.at_import_time]
    assert torch_imports == []


BLOCKED_IMPORTS = """
import importlib, json, sys
for name in ("torch", "transformers", "torchvision"):
    sys.modules[name] = None  # as if not installed: `import torch` raises ImportError
failed = {}
for module in json.loads(sys.argv[1]):
    try:
        importlib.import_module(module)
    except Exception as exc:
        failed[module] = type(exc).__name__
print(json.dumps(failed))
"""


def test_without_torch_the_core_imports_and_torch_only_code_refuses_naming_the_extra():
    modules = sorted(module for module in module_files() if not module.endswith("__main__"))
    done = subprocess.run([sys.executable, "-c", BLOCKED_IMPORTS, json.dumps(modules)],
                          capture_output=True, text=True, timeout=600, cwd=PACKAGE_DIR.parent)
    assert done.returncode == 0, done.stderr
    failed = json.loads(done.stdout.strip().splitlines()[-1])
    assert {module: error for module, error in failed.items() if not is_torch_only(module)} == {}
    entry_points = [f"memesearch.ml.families.{family}.{name}" for family in ("smolvlm", "florence2", "moondream", "clip")
                    for name in ("torch_backend", "export", "tiny")]
    assert {module: failed.get(module) for module in entry_points} == dict.fromkeys(entry_points, "MissingDependencyError")
