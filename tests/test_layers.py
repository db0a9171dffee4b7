"""The package's layers (STYLE.md "The layers"): a module imports only from its own layer or below,
and no two modules import each other, directly or round a loop. Read from the source with ``ast``
(function-level imports count too), so nothing is imported to check it."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "rdet"

# lowest first; a package may import its own layer and any below
LAYERS = (
    ("core",),
    ("config", "paper"),
    ("attacks", "backbones", "data"),
    ("engine", "transfer"),
    ("tasks", "convert", "detection", "select"),
    ("study", "report"),
    ("cli", "__main__"),
)
LAYER = {pkg: i for i, names in enumerate(LAYERS) for pkg in names}


def _modules():
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), f


def _imports(path: Path, module: str):
    """The rdet modules ``path`` imports (``from rdet.x import y`` counts as rdet.x; relative
    imports are resolved against ``module``)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "rdet":  # from rdet import x: x is a package
                yield from (f"rdet.{a.name}" for a in node.names)
            elif name.startswith("rdet."):
                yield name
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("rdet."))


def _package(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def _graph():
    mods = dict(_modules())
    graph = {}
    for mod, path in mods.items():
        deps = set()
        for name in _imports(path, mod):
            # the longest existing module prefix: rdet.engine.EpochTrainer -> rdet.engine
            while name not in mods and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in mods and name != mod:
                deps.add(name)
        graph[mod] = deps
    return graph


def test_every_package_has_a_layer():
    assert {_package(m) for m in _graph()} - {"__init__"} <= set(LAYER)


def test_no_module_imports_a_higher_layer():
    bad = sorted(f"{m} -> {d}" for m, deps in _graph().items() for d in deps
                 if _package(m) != "__init__" and _package(d) != "__init__"
                 and LAYER[_package(d)] > LAYER[_package(m)])
    assert not bad, "imports of a higher layer:\n" + "\n".join(bad)


def test_no_import_cycle():
    """Between packages (a package's __init__ re-exporting its own modules is not a cycle)."""
    graph = _graph()
    pkgs = {}
    for m, deps in graph.items():
        pkgs.setdefault(_package(m), set()).update(_package(d) for d in deps if _package(d) != _package(m))
    state, stack, cycles = {}, [], []

    def visit(p):
        state[p] = "open"
        stack.append(p)
        for q in sorted(pkgs.get(p, ())):
            if state.get(q) == "open":
                cycles.append(" -> ".join(stack[stack.index(q):] + [q]))
            elif q not in state:
                visit(q)
        stack.pop()
        state[p] = "done"

    for p in sorted(pkgs):
        if p not in state:
            visit(p)
    assert not cycles, "import cycles: " + "; ".join(cycles)
