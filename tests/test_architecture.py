"""The package reads as the flow: a test of its import graph (DESIGN.md, "The data flow").

Every ``import`` statement of ``eocube`` is read from the source (deferred imports inside
functions included, since they hide cycles just as well as they hide them from Python), and
three rules are checked:

- a folder imports only from folders before it in the flow, never from one after it;
- the module graph has no cycle;
- no private name (``_x``) is imported from another module, and a private module is imported
  only from inside its own folder.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import eocube

PACKAGE = Path(eocube.__file__).parent

# The flow, upstream first. A folder may import from its own rank or an earlier one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "_deps", "counters"),  # the root package imports lazily
    ("io",),
    ("catalog",),
    ("synth",),
    ("cube",),
    ("models",),
    ("infer",),
    ("change",),
    ("zonal",),
    ("estimates",),
    ("pipeline", "testing"),
    ("cli", "__main__"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def top(mod: str) -> str:
    """The folder (or top-level module) of ``eocube.<top>.…``; ``__init__`` for the root."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(known: dict[str, Path]) -> list[tuple[str, str, str | None, int]]:
    """(importer, imported module, imported name or None, line) for every eocube import."""
    found = []
    for mod, path in known.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found += [(mod, a.name, None, node.lineno) for a in node.names
                          if a.name.split(".")[0] == "eocube"]
            elif isinstance(node, ast.ImportFrom):
                target = resolve(mod, is_pkg, node)
                if target.split(".")[0] != "eocube":
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in known:  # `from eocube.cube import load` where load is a module
                        found.append((mod, sub, None, node.lineno))
                    else:
                        found.append((mod, target, alias.name, node.lineno))
    return found


KNOWN = modules()
IMPORTS = imports(KNOWN)


def test_the_walk_sees_the_package():
    # A walk that finds nothing would pass every rule below.
    assert len(KNOWN) > 50
    assert len(IMPORTS) > 100
    assert all(top(m) in RANK for m in KNOWN), sorted({top(m) for m in KNOWN} - set(RANK))


def test_no_upward_import():
    upward = [f"{m}:{line} imports {t} ({top(m)} comes before {top(t)} in the flow)"
              for m, t, _, line in IMPORTS
              if top(t) in RANK and RANK[top(t)] > RANK[top(m)]]
    assert upward == []


def test_no_import_cycle():
    graph: dict[str, set[str]] = {m: set() for m in KNOWN}
    for m, t, _, _ in IMPORTS:
        # a module importing its own parent package is Python's import order, not a cycle;
        # a package's __init__ importing its children is the package assembling itself
        if t in KNOWN and t != m and not m.startswith(t + ".") and not t.startswith(m + "."):
            graph[m].add(t)
    cycles = find_cycles(graph)
    assert cycles == [], "\n".join(" → ".join(c) for c in cycles)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_private_name_across_modules():
    private = [f"{m}:{line} imports {name} from {t}" for m, t, name, line in IMPORTS
               if name and name.startswith("_") and not name.startswith("__") and t != m]
    assert private == []


def test_private_modules_stay_in_their_folder():
    def folder(mod: str) -> str:
        return mod.rsplit(".", 1)[0]

    leaks = [f"{m}:{line} imports {t}" for m, t, _, line in IMPORTS
             if any(p.startswith("_") and not p.startswith("__") for p in t.split(".")[1:])
             and t.split(".")[1] not in ("_deps",)
             and not m.startswith(folder(t))]
    assert leaks == []


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("from eocube.pipeline import demo\n", test_no_upward_import),
        ("from eocube.errors import _hidden\n", test_no_private_name_across_modules),
    ],
)
def test_the_rules_catch_a_violation(tmp_path, monkeypatch, source, rule):
    # The rules fail on a planted violation in the catalog folder.
    planted = {**KNOWN, "eocube.catalog._planted": tmp_path / "planted.py"}
    (tmp_path / "planted.py").write_text(source)
    monkeypatch.setitem(globals(), "KNOWN", planted)
    monkeypatch.setitem(globals(), "IMPORTS", imports(planted))
    with pytest.raises(AssertionError):
        rule()


def test_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# ---- one name, one object ---------------------------------------------------------------------

def public_names(*, undeclared: bool = False) -> dict[str, list[tuple[str, object]]]:
    """Public name → [(module, object)] over every module's ``__all__`` (``cli`` and private
    modules left out: a command may share its function's name; ``_x`` modules are not
    public). With ``undeclared``, a module without ``__all__`` adds the public functions and
    classes it defines. Importing a module may need an optional dependency; one that is
    missing skips that module only."""
    import importlib
    import inspect

    owners: dict[str, list[tuple[str, object]]] = {}
    for mod in KNOWN:
        parts = mod.split(".")
        if parts[1:2] in (["cli"], ["__main__"]) or any(
                p.startswith("_") and not p.startswith("__") for p in parts):
            continue
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:  # an optional dependency, never an eocube module
            if (e.name or "").split(".")[0] == "eocube":
                raise
            continue
        names = getattr(module, "__all__", None)
        if names is None:
            names = [k for k, v in vars(module).items() if undeclared and not k.startswith("_")
                     and (inspect.isfunction(v) or inspect.isclass(v))
                     and v.__module__ == mod]
        for name in names:
            owners.setdefault(name, []).append((mod, getattr(module, name)))
    return owners


def clashes(owners: dict[str, list[tuple[str, object]]]) -> list[str]:
    """Names that two modules define as different objects (a re-export is the same object)."""
    out = []
    for name, found in sorted(owners.items()):
        distinct: list[tuple[str, object]] = []
        for mod, obj in found:
            if not any(obj is o for _, o in distinct):
                distinct.append((mod, obj))
        if len(distinct) > 1:
            out.append(f"{name}: " + ", ".join(m for m, _ in distinct))
    return out


def test_no_public_name_names_two_objects():
    owners = public_names()
    assert len(owners) > 200  # the walk saw the package's public API
    assert clashes(owners) == []


#: clashes between modules without ``__all__`` left to their folders' owners (pipeline): each
#: is renamed there, then removed here (the test fails when this list is out of date)
UNDECLARED_CLASHES: list[str] = []


def test_no_function_or_class_name_names_two_objects():
    assert clashes(public_names(undeclared=True)) == UNDECLARED_CLASHES


def test_the_clash_rule_catches_two_objects_and_allows_a_re_export():
    def f() -> None: ...

    def g() -> None: ...

    assert clashes({"f": [("a", f), ("b", f)]}) == []
    assert clashes({"f": [("a", f), ("b", g), ("c", f)]}) == ["f: a, b"]


#: module names two folders share, left to their owners (``testing/zones.py`` makes test zones
#: for ``zonal/zones.py``); the test fails when this list is out of date
SHARED_MODULE_NAMES: list[str] = []


def test_no_module_name_in_two_folders():
    folders: dict[str, list[str]] = {}
    for mod in KNOWN:
        parts = mod.split(".")
        if len(parts) > 2 and parts[-1] != "__init__":
            folders.setdefault(parts[-1], []).append(".".join(parts[:-1]))
    shared = [f"{name}: {', '.join(sorted(where))}" for name, where in sorted(folders.items())
              if len(where) > 1]
    assert shared == SHARED_MODULE_NAMES
