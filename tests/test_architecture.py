"""The architecture as a test: the arrows of docs/architecture.md, checked against the code.

Every project module's imports are read statically (ast): module-level ones and those inside
functions, relative imports resolved to absolute names, `if TYPE_CHECKING:` blocks skipped
(they never run). A failure names the file, the line, the importing module and the import that
breaks the rule. What importing a package actually loads is checked in a fresh interpreter.

Not seen by these checks: implicit parent-package imports (importing `tracking.paths` runs
`tracking/__init__.py`; the subprocess checks cover what that loads) and dynamic imports by
name (`importlib.import_module` of a user's factory in curvewatch/trainer/factories.py).
"""
from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Folders whose .py files are project modules, and the scripts at the top.
PACKAGES = ("curvewatch", "trainer", "examples")
#: The parts of the curvewatch package that the rules below name on their own.
LAYERS = ("tracking", "diagnosis", "trainer", "dashboard")
SCRIPTS = ("app.py",)

#: What diagnosis may not import, and why (docs/architecture.md: "diagnosis imports no torch,
#: streamlit or file I/O"; docs/diagnosis.md: "No files, no torch, no streamlit").
DIAGNOSIS_FORBIDDEN = {
    "torch": "torch",
    "streamlit": "streamlit",
    "tracking": "file I/O (the run-folder format)",
    **dict.fromkeys(
        ("os", "pathlib", "io", "shutil", "glob", "tempfile", "pickle", "shelve", "marshal",
         "dbm", "json", "csv", "sqlite3", "gzip", "bz2", "lzma", "zipfile", "tarfile",
         "fileinput", "filecmp", "linecache", "mmap", "subprocess", "socket", "urllib", "http",
         "requests", "pyarrow", "h5py"),
        "file I/O"),
    **dict.fromkeys(("importlib", "builtins"), "a way around these checks (dynamic imports, "
                                               "builtins.open)"),
}
#: Calls that read or write files: builtin open, and numpy/pandas file readers and writers.
FILE_CALLS = frozenset({
    "open", "read_csv", "read_json", "read_parquet", "read_pickle", "read_table", "read_excel",
    "read_feather", "read_hdf", "read_sql", "read_fwf", "read_orc", "read_xml", "read_html",
    "to_csv", "to_json", "to_parquet", "to_pickle", "to_excel", "to_feather", "to_hdf",
    "to_sql", "to_xml", "load", "save", "savez", "savez_compressed", "loadtxt", "savetxt",
    "genfromtxt", "fromfile", "tofile", "memmap",
})
#: docs/diagnosis.md: "numpy, pandas and the standard library only".
#: scipy: diagnosis.forecast fits learning-curve laws with scipy.optimize (issue 13), lazily
DIAGNOSIS_THIRD_PARTY = {"numpy", "pandas", "scipy"}


@dataclass(frozen=True)
class Import:
    """One import statement's name, in absolute form, as one project module writes it."""

    module: str  # the importing project module: "curvewatch.tracking.reader", "app"
    path: Path
    line: int
    # "curvewatch.tracking.paths", "os.path", "torch": a submodule when `from X import sub`
    target: str
    deferred: bool  # inside a function: runs when called, not when the module is imported

    @property
    def top(self) -> str:
        return layer(self.target)

    def __str__(self) -> str:
        where = " (inside a function)" if self.deferred else ""
        return (f"{self.path.relative_to(ROOT)}:{self.line}: {self.module} imports "
                f"{self.target}{where}")


def layer(module: str) -> str:
    """The part a module belongs to: tracking, diagnosis, trainer, dashboard (curvewatch's
    subpackages), curvewatch (its own modules), app, examples, or a third-party top name."""
    parts = module.split(".")
    if parts[0] == "curvewatch" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return parts[0]


@functools.cache
def project_modules() -> dict[str, tuple[Path, bool]]:
    """Every project module's dotted name -> (file, is it a package's __init__)."""
    found: dict[str, tuple[Path, bool]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join(parts)] = (path, is_package)
    for script in SCRIPTS:
        found[Path(script).stem] = (ROOT / script, False)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports_of(module: str, path: Path, is_package: bool) -> list[Import]:
    modules = project_modules()
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit(other, deferred)
                continue
            inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend(Import(module, path, child.lineno, a.name, inner)
                             for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.append(Import(module, path, child.lineno,
                                        sub if sub in modules else base, inner))
            visit(child, inner)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), False)
    return found


@functools.cache
def project_imports() -> tuple[Import, ...]:
    return tuple(i for m, (path, is_package) in project_modules().items()
                 for i in _imports_of(m, path, is_package))


def imports_from(*layers: str) -> list[Import]:
    return [i for i in project_imports() if layer(i.module) in layers]


def fail_if_any(offenders: list[Import] | list[str], rule: str) -> None:
    """Fail naming the rule and every offending import, one a line."""
    if offenders:
        pytest.fail(f"{rule}:\n  " + "\n  ".join(map(str, offenders)), pytrace=False)


def import_closure(start: str) -> set[str]:
    """The project modules `start` imports, directly or through others, deferred ones too
    (they run when the caller uses what it imported), `start` included."""
    modules = project_modules()
    edges: dict[str, set[str]] = {}
    for i in project_imports():
        if i.target in modules:
            edges.setdefault(i.module, set()).add(i.target)
    seen, todo = {start}, [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


# --------------------------------------------------------------------------- the scan itself
def test_the_scan_reads_every_project_module_and_resolves_relative_and_deferred_imports():
    """The rules below pass vacuously if the scan sees nothing: it must see these."""
    modules = project_modules()
    fail_if_any([m for m in ("app", "examples.own_loop", "curvewatch.tracking",
                             "curvewatch.tracking.reader",
                             "curvewatch.diagnosis.engine", "curvewatch.trainer.config",
                             "curvewatch.dashboard.views.run")
                 if m not in modules], "the scan did not find these project modules")
    seen = {(i.module, i.target, i.deferred) for i in project_imports()}
    expected = [
        # from . import paths as P
        ("curvewatch.tracking.groups", "curvewatch.tracking.paths", False),
        # from .jsonl import read_from
        ("curvewatch.tracking.reader", "curvewatch.tracking.jsonl", False),
        # a package's own relative import
        ("curvewatch.diagnosis", "curvewatch.diagnosis.engine", False),
        ("curvewatch.trainer.cli", "curvewatch.trainer.groups", True),  # imported inside a function
    ]
    fail_if_any([f"{m} imports {t}" + (" inside a function" if d else "")
                 for m, t, d in expected if (m, t, d) not in seen],
                "the scan did not see these imports")


# --------------------------------------------------------------------------- the arrows
def test_tracking_and_diagnosis_import_neither_trainer_nor_dashboard():
    offenders = [i for i in imports_from("tracking", "diagnosis")
                 if i.top in ("trainer", "dashboard", "app")]
    fail_if_any(offenders, "tracking and diagnosis must import neither trainer nor the "
                           "dashboard (docs/architecture.md)")


def test_the_trainer_does_not_import_the_dashboard():
    offenders = [i for i in imports_from("trainer") if i.top in ("dashboard", "app")]
    fail_if_any(offenders, "arrows point one way: the trainer must not import the dashboard "
                           "(docs/architecture.md)")


def test_diagnosis_imports_no_torch_no_streamlit_and_nothing_for_file_io():
    offenders = [f"{i}: {DIAGNOSIS_FORBIDDEN[i.top]}" for i in imports_from("diagnosis")
                 if i.top in DIAGNOSIS_FORBIDDEN]
    fail_if_any(offenders, "diagnosis is pure analysis: no torch, no streamlit, no file I/O "
                           "(docs/architecture.md, docs/diagnosis.md)")


def test_diagnosis_depends_only_on_numpy_pandas_and_the_standard_library():
    offenders = [i for i in imports_from("diagnosis")
                 if i.top != "diagnosis" and i.top not in DIAGNOSIS_THIRD_PARTY
                 and i.top not in sys.stdlib_module_names]
    fail_if_any(offenders, "diagnosis may use numpy, pandas, scipy and the standard library only "
                           "(docs/diagnosis.md)")


def test_diagnosis_calls_no_open_and_no_file_reader_or_writer():
    offenders = []
    for module, (path, _) in project_modules().items():
        if layer(module) != "diagnosis":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) \
                else None
            if name in FILE_CALLS and (isinstance(f, ast.Attribute) or name == "open"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module} calls "
                                 f"{ast.unparse(f)}()")
    fail_if_any(offenders, "diagnosis takes a DataFrame in and gives findings out; it reads "
                           "and writes no files (docs/diagnosis.md)")


def test_the_dashboard_and_app_import_from_the_trainer_only_its_config():
    allowed = {m for m in import_closure("curvewatch.trainer.config") if layer(m) == "trainer"}
    offenders = [i for i in imports_from("dashboard", "app")
                 if i.top == "trainer" and i.target not in allowed]
    fail_if_any(offenders, f"the dashboard starts runs through `python -m trainer`; from the "
                           f"trainer it imports only trainer.config (the Launch form's options) "
                           f"and what that imports: {', '.join(sorted(allowed))} "
                           f"(docs/architecture.md)")


def test_the_dashboard_and_app_import_no_torch():
    offenders = [i for i in imports_from("dashboard", "app") if i.top == "torch"]
    fail_if_any(offenders, "the dashboard never imports torch (docs/dashboard.md)")


@pytest.mark.parametrize("package", ["curvewatch.trainer.config", "curvewatch.diagnosis",
                                     "curvewatch.tracking"])
def test_importing_loads_neither_torch_nor_streamlit(package):
    """What the dashboard and a user's loop import stays light: checked in a fresh interpreter,
    so imports made by other modules at import time count too."""
    code = (f"import sys, {package}\n"
            f"print(' '.join(m for m in ('torch', 'streamlit') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"importing {package} fails:\n{done.stderr}", pytrace=False)
    loaded = done.stdout.strip()
    if loaded:
        pytest.fail(f"importing {package} loads {loaded}; `python -X importtime -c "
                    f"'import {package}'` shows which import brings it in", pytrace=False)


def _tangles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan): modules that reach each
    other through imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def _circle(edges: dict[str, dict[str, Import]], tangle: list[str]) -> list[Import]:
    """The imports of one shortest circle through the tangle's first module (breadth-first)."""
    start, members = tangle[0], set(tangle)
    came: dict[str, Import] = {}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for nxt, how in sorted(edges[node].items()):
            if nxt == start:
                circle = [how]
                while circle[0].module != start:
                    circle.insert(0, came[circle[0].module])
                return circle
            if nxt in members and nxt not in came:
                came[nxt] = how
                todo.append(nxt)
    raise AssertionError(f"no circle through {start}")  # a tangle always has one


def test_project_modules_import_each_other_without_cycles_deferred_imports_included():
    """A circle closed by an import inside a function is still a circle: the deferral only
    hides it until the first call. The shared piece belongs in a module both can import."""
    modules = project_modules()
    edges: dict[str, dict[str, Import]] = {}
    for i in project_imports():
        if i.target in modules and i.target != i.module:
            edges.setdefault(i.module, {}).setdefault(i.target, i)
    reports = []
    for tangle in _tangles(edges):
        circle = _circle(edges, tangle)
        names = [circle[0].module] + [i.target for i in circle]
        more = f" (in a tangle of {len(tangle)}: {', '.join(tangle)})" \
            if len(tangle) > len(circle) else ""
        reports.append(" -> ".join(names) + more + ":\n    " + "\n    ".join(map(str, circle)))
    fail_if_any(reports, "project modules import each other in a circle; move the shared "
                         "piece into a module both can import (docs/architecture.md)")
