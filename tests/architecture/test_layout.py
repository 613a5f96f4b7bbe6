"""The package's layout keeps its promises: no import cycles, Qt only in _qt/, small modules, and
every command of the docs and scripts runs from the repository root of a checkout."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "napari_histostain"
#: Modules allowed over MAX_LINES; docs/architecture.md says why.
LARGE_MODULES = {"napari_histostain/_qt/widget.py", "napari_histostain/_qt/ihc_panel.py"}
MAX_LINES = 500
QT_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt")


def _sources() -> dict[str, Path]:
    """Module name -> file of the package (training/ is installed as napari_histostain.training)."""
    out = {}
    for base, prefix in (
        (PACKAGE, ["napari_histostain"]),
        (ROOT / "training", ["napari_histostain", "training"]),
    ):
        for f in base.rglob("*.py"):
            parts = prefix + list(f.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `name` imports anywhere in its body (inside functions too)."""
    is_pkg = path.name == "__init__.py"
    found = set()

    def known(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [
                f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
                for a in node.names
            ]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for t in targets:
            k = known(t) if t.startswith("napari_histostain") else None
            if k and k != name:
                found.add(k)
    return found


def test_no_import_cycles():
    modules = _sources()
    graph = {m: _imports(m, f, modules) for m, f in modules.items()}
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_qt_only_in_the_qt_package():
    offenders = []
    for f in PACKAGE.rglob("*.py"):
        if "_qt" in f.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            if any(n.split(".")[0] in QT_MODULES for n in names):
                offenders.append(str(f.relative_to(ROOT)))
    assert not offenders, f"Qt imported outside napari_histostain/_qt: {sorted(set(offenders))}"


def test_modules_are_small_or_say_why():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    big = []
    for f in list(PACKAGE.rglob("*.py")) + list((ROOT / "training").rglob("*.py")):
        rel = str(f.relative_to(ROOT))
        if len(f.read_text().splitlines()) > MAX_LINES and rel not in LARGE_MODULES:
            big.append(rel)
    assert not big, f"modules over {MAX_LINES} lines: {big}"
    for rel in LARGE_MODULES:
        assert rel in doc, f"docs/architecture.md must say why {rel} is large"


def _documented_commands() -> list[list[str]]:
    """`histostain <command>` lines of the model cards, README and scripts/train_bundled.sh."""
    texts = [p.read_text() for p in (ROOT / "docs").glob("model-card-*.md")]
    texts += [(ROOT / "README.md").read_text(), (ROOT / "scripts" / "train_bundled.sh").read_text()]
    commands = set()
    for text in texts:
        for m in re.finditer(r"(?<![-\w])histostain ([a-z][a-z-]+)", text):
            commands.add(m.group(1))
    return sorted([c] for c in commands)


@pytest.mark.parametrize("command", [c[0] for c in _documented_commands()])
def test_documented_commands_run_from_the_repository_root(command):
    """A fresh checkout set up as README says runs each documented command from its root (the
    source folder shadows the installed package there: training/ must still be found)."""
    r = subprocess.run(
        [sys.executable, "-m", "napari_histostain.cli", command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "usage:" in r.stdout


@pytest.mark.slow
def test_every_command_and_script_has_help():
    """Every CLI command and every script in scripts/ and benchmarks/ answers --help."""
    from napari_histostain.cli import COMMAND_MODULES

    r = subprocess.run(
        [sys.executable, "-m", "napari_histostain.cli", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    for module in COMMAND_MODULES:
        assert module.replace("_", "-") in r.stdout
    scripts = sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    for script in scripts:
        r = subprocess.run(
            [sys.executable, str(script), "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0 and "usage:" in r.stdout, f"{script.name}: {r.stdout}{r.stderr}"


def test_every_package_is_installed():
    """setup.cfg lists its packages one by one: a new folder left out works in the editable dev
    install but is missing from the wheel (and from CI's install)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    found = {".".join(f.parent.relative_to(ROOT).parts) for f in PACKAGE.rglob("__init__.py")} | {
        "napari_histostain.training"
    }
    assert found <= listed, f"add to setup.cfg [options] packages: {sorted(found - listed)}"
