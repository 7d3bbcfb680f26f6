"""The package's layers: ``cli/`` parses, calls and prints; nothing else depends on it.

The web app, the ML service and the jobs must not load the CLI (typer, rich) at all, so
folder validation and indexing live in ``library/`` where every front end can reach them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "memesearch"


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, at module level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _python_files(*folders: Path) -> list[Path]:
    return [path for folder in folders for path in sorted(folder.rglob("*.py"))]


def test_nothing_outside_cli_imports_the_cli():
    cli = PACKAGE / "cli"
    entry_point = PACKAGE / "__main__.py"  # `python -m memesearch` runs the CLI: its one job
    offenders = []
    for path in _python_files(PACKAGE, ROOT / "scripts", ROOT / "bench"):
        if path == entry_point or cli in path.parents:
            continue
        for name in _imported_modules(path):
            if name == "memesearch.cli" or name.startswith("memesearch.cli."):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    """The walk above must catch the kind of import that used to slip in (inside a route)."""
    sample = tmp_path / "route.py"
    sample.write_text("def add():\n    from memesearch.cli.library_cmds import validate_folder\n")
    assert "memesearch.cli.library_cmds" in _imported_modules(sample)


def test_web_app_and_service_load_without_the_cli():
    probe = (
        "import sys\n"
        "import memesearch.web.app, memesearch.service.app, memesearch.jobs.worker\n"
        "loaded = sorted(m for m in sys.modules if m == 'typer' or m.startswith('memesearch.cli'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
