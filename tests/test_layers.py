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


# ``python -m rdet.<command>`` entry points (rdet/classify.py, rdet/select/__main__.py, ...): the
# command line's layer wherever they sit, since all they do is call ``rdet.cli.<command>.main``.
ENTRY_MODULES = {"classify", "pretrain", "evaluate", "train_det"}


def _package(module: str) -> str:
    if module.endswith(".__main__") or module.split(".")[-1] in ENTRY_MODULES and module.count(".") == 1:
        return "__main__"
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
    pkgs = {}
    for m, deps in _graph().items():
        pkgs.setdefault(_package(m), set()).update(_package(d) for d in deps if _package(d) != _package(m))
    cycles = _cycles(pkgs)
    assert not cycles, "import cycles: " + "; ".join(cycles)


# The ``_``-prefixed attributes rdet reads of objects it does not own, each in its one adapter
# module (module -> attributes). torchvision's dataset internals live in
# rdet/data/torchvision_private.py, whose docstring says why; detectron2 needs none. The others:
# torch's BatchNorm base class and tensor version counter, rdet's own mark on the logging
# handlers it adds, and the numpy / codecs globals a checkpoint's pickle may name, which the
# restricted unpickler allows by name.
PRIVATE_READS = {
    "rdet.data.torchvision_private": {"_labels", "_samples", "_image_files", "_images", "_file_dict"},
    "rdet.engine.batchnorm": {"_BatchNorm"},
    "rdet.cli": {"_rdet_console"},
    "rdet.core.safe_pickle": {"_codecs", "_frombuffer", "_reconstruct"},
    "rdet.backbones.skip_init": {"_version"},
    "rdet.detection.groups": {"_LOCAL_PROCESS_GROUP", "_get_global_gloo_group"},
}


def _private_reads(path: Path):
    """``_x`` attributes ``path`` reads of anything but ``self``/``cls``: ``a._x``, ``getattr(a,
    "_x")``, and ``"_x"`` strings in tuples (names handed to getattr through a list of them)."""
    def private(name):
        return isinstance(name, str) and name.isidentifier() and name.startswith("_") and not name.startswith("__")

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                yield node.attr
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr", "setattr"):
            if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and private(node.args[1].value):
                yield node.args[1].value
        elif isinstance(node, ast.Tuple):
            yield from (e.value for e in node.elts if isinstance(e, ast.Constant) and private(e.value))


def test_private_attributes_only_in_their_adapter_module():
    found = {mod: set(_private_reads(path)) for mod, path in _modules()}
    stray = sorted(f"{mod}: {attr}" for mod, attrs in found.items()
                   for attr in attrs - PRIVATE_READS.get(mod, set()))
    assert not stray, "private attributes read outside their adapter module:\n" + "\n".join(stray)
    # the adapter list is current: each entry is still read where it is declared
    assert all(PRIVATE_READS[m] <= found[m] for m in PRIVATE_READS)


def test_each_task_kind_module_is_found_registers_and_is_listed(capsys):
    """A study task kind is one module in rdet/study/kinds and nothing else: the package imports
    each module it holds (no list to edit), each registers at least one kind, and ``python -m
    rdet study --kinds`` lists every kind from the registry (no hand-kept table)."""
    import pkgutil

    import rdet.study.kinds as kinds
    from rdet.cli.study import main
    from rdet.study.base import TASK_KINDS

    modules = {m.name for m in pkgutil.iter_modules(kinds.__path__)}
    owners = {type(k).__module__.rsplit(".", 1)[-1] for k in TASK_KINDS.values()}
    assert modules <= owners, modules - owners
    assert main(["--kinds"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["section", "kind", "module"]
    listed = {(line.split()[1], line.split()[2]) for line in lines[1:]}
    assert listed == {(k.name, type(k).__module__) for k in TASK_KINDS.values()}
    assert "rdet.study.kinds.robustness" in {m for _, m in listed}  # the AutoAttack kind, added in its own module
    # each row says what the kind does (its docstring), in the kinds' expansion order
    assert all(len(line.split()) > 3 for line in lines[1:])
    sections = [line.split()[0] for line in lines[1:] if line.split()[0] != "-"]
    assert sections[:3] == ["commands", "pretrain", "backbones"]


def _cycles(graph):
    """Every loop of ``graph`` (node -> nodes it imports), each once, as ``a -> b -> a``."""
    state, stack, found = {}, [], []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == "open":
                found.append(" -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def test_no_import_cycle_between_modules_within_a_package():
    """Module by module, function-level imports included: a package's ``__init__`` re-exporting its
    modules is the one edge left out (the modules never import it back for what it re-exports)."""
    graph = {m: {d for d in deps if not (d == m.rsplit(".", 1)[0] and d + ".__init__" != m)
                 and not _is_reexport(m, d)} for m, deps in _graph().items()}
    cycles = _cycles(graph)
    assert not cycles, "module import cycles:\n" + "\n".join(cycles)


def _is_reexport(module: str, dep: str) -> bool:
    """``rdet.x`` (a package __init__) importing its own submodule ``rdet.x.y``."""
    return dep.startswith(module + ".")
