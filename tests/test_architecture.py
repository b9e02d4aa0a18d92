"""The layout's promises, checked on the source: data flows one way, the CLI is the only click code,
nothing reads the environment behind the caller's back, and no module-level import circles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnnapp"
CLICK_ALLOWED = ("cli/",)


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Absolute names a module imports (relative imports resolved), at module level or anywhere."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_inference_and_serving_import_nothing_of_training_models_or_preprocessing():
    forbidden = ("cnnapp.training", "cnnapp.models", "cnnapp.pipelines", "cnnapp.preprocessing", "cnnapp.tasks",
                 "cnnapp.export", "cnnapp.data")
    bad = {name: sorted(i for i in imports(path) if i.startswith(forbidden))
           for name, path in modules().items() if name.startswith(("cnnapp.inference", "cnnapp.serving"))}
    assert not {k: v for k, v in bad.items() if v}, bad


def test_only_the_cli_imports_click():
    bad = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
           if "click" in imports(p) and not str(p.relative_to(PACKAGE)).startswith(CLICK_ALLOWED)]
    assert not bad, bad


def test_library_code_reads_no_environment_variables():
    """TF_CONFIG and friends are read by the CLI and passed on as values (the launcher copies the
    environment to its workers; the digits sample writer is a script's __main__)."""
    allowed = ("cli/", "training/cluster.py", "data/image/digits.py")
    bad = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
           if ("os.environ" in p.read_text() or "getenv" in p.read_text())
           and not str(p.relative_to(PACKAGE)).startswith(allowed)]
    assert not bad, bad


def module_level_dependencies(name: str, path: Path, mods: dict) -> set[str]:
    """The cnnapp modules a module needs at import. Importing `a.b.c` runs `a`, then `a.b`, then `a.b.c`:
    each module named and its parent packages, except the importer's own parents, which are already
    importing when it runs (a package's __init__ importing its submodules is no circle). But `from pkg
    import name` of a name that is not a submodule needs `pkg` finished, own parent or not: cli/__init__
    defining a helper its commands import from it, after importing them, is a circle."""
    own_parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
    named, needs_finished = set(), set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            named |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & set(mods)
            named |= {node.module} | submodules
            if len(submodules) < len(node.names):
                needs_finished.add(node.module)
    runs = {".".join(m.split(".")[:i]) for m in named for i in range(1, m.count(".") + 2)} - own_parents
    return {d for d in runs | needs_finished if d in mods}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    seen, on_path, cycles = set(), [], []

    def visit(node):
        if node in on_path:
            cycles.append(on_path[on_path.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        on_path.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        on_path.pop()

    for node in sorted(graph):
        visit(node)
    return cycles


def test_the_import_graph_keeps_parent_package_edges(tmp_path):
    """A command importing a helper from its own package's __init__ (which imports the commands) is a
    circle; importing a sibling submodule, or a module of another package, is not — but that other
    package's __init__ runs first, so its edges count."""
    files = {"pkg/__init__.py": "from pkg import cmd\n", "pkg/cmd.py": "from pkg import helper\n",
             "pkg/errors.py": "", "other/__init__.py": "import pkg.cmd\n", "other/mod.py": ""}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text(text)

    def graph():
        mods = {".".join(Path(rel).with_suffix("").parts).removesuffix(".__init__"): tmp_path / rel for rel in files}
        return {n: module_level_dependencies(n, p, mods) - {n} for n, p in mods.items()}
    assert [set(c) for c in find_cycles(graph())] == [{"pkg", "pkg.cmd"}]
    (tmp_path / "pkg/cmd.py").write_text("from pkg.errors import helper\nfrom pkg import errors\n")
    assert find_cycles(graph()) == []
    (tmp_path / "pkg/errors.py").write_text("import other.mod\n")   # runs other/__init__, which imports pkg.cmd
    assert [set(c) for c in find_cycles(graph())] == [{"other", "pkg.cmd", "pkg.errors", "pkg"}]


def test_no_module_level_import_circles():
    mods = modules()
    cycles = find_cycles({name: module_level_dependencies(name, path, mods) - {name} for name, path in mods.items()})
    assert not cycles, cycles[:3]


def test_no_mutable_module_state_in_the_training_path():
    """No module-level assignment of a mutable value that code later rebinds via `global`."""
    bad = [str(p.relative_to(PACKAGE)) for p in (PACKAGE / "training").rglob("*.py")
           if any(isinstance(n, ast.Global) for n in ast.walk(ast.parse(p.read_text())))]
    assert not bad, bad
