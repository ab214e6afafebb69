"""Layering (STYLE.md L2): numpy_gpt <- torch_gpt <- parity, bench, and no import cycles.

Static half: an import graph read with `ast` from every .py file under the four packages,
modules found by walking the folders (no module names written here, so files can move).
Behavioural half (slow): `python -m numpy_gpt` run end to end in a subprocess where
importing torch, torch_gpt or transformers fails.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("numpy_gpt", "torch_gpt", "parity", "bench")
REFERENCE = "numpy_gpt"
# what the NumPy twin never imports: the torch twin and its framework, the apps, the harnesses
FORBIDDEN_IN_REFERENCE = ("torch", "torch_gpt", "transformers", "streamlit", "parity", "bench",
                          "tests")
TORCH_ONLY = ("torch", "torch_gpt")  # checked by its own test, with the one exception below
LEGACY_BIN_MARKERS = ("pytorch_model.bin", "weights_only=True")


@dataclass(frozen=True)
class Import:
    """One import statement, resolved to absolute module names."""

    module: str  # the importing module, e.g. numpy_gpt.tokenizers.base
    path: Path  # its file, relative to ROOT
    line: int
    names: tuple[str, ...]  # `from .a import B` -> (pkg.a,), plus pkg.a.B if that is a module
    function: ast.AST | None  # innermost enclosing def, None at module or class level

    @property
    def where(self) -> str:
        return f"{self.path.as_posix()}:{self.line}"


@functools.cache  # the tree does not change during a test session; parsed once
def module_files() -> dict[str, Path]:
    """Every module of the four packages -> its file (relative to ROOT); a package's
    __init__.py is the module named by the package."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if any(part.startswith((".", "__pycache__")) for part in rel.parts[:-1]):
                continue
            parts = rel.with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = rel
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


class _ImportCollector(ast.NodeVisitor):
    """Every import in a file, lazy ones inside functions included. The bodies of
    `if TYPE_CHECKING:` are skipped: they never run (their `else:` branch does)."""

    def __init__(self, module: str, path: Path, is_package: bool, known: set[str]) -> None:
        self.module, self.path, self.known = module, path, known
        self.package = module if is_package else module.rpartition(".")[0]
        self.functions: list[ast.AST] = []
        self.imports: list[Import] = []

    def _add(self, node: ast.stmt, names: list[str]) -> None:
        function = self.functions[-1] if self.functions else None
        self.imports.append(Import(self.module, self.path, node.lineno, tuple(names), function))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self._add(node, [alias.name for alias in node.names])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = node.module or ""
        if node.level:
            base = self.package.split(".")
            keep = len(base) - (node.level - 1)
            if keep >= 1:
                source = ".".join(base[:keep] + ([node.module] if node.module else []))
            else:  # beyond the top-level package: an ImportError at run time; kept as written
                source = "." * node.level + source
        names = [source]
        names += [f"{source}.{alias.name}" for alias in node.names
                  if f"{source}.{alias.name}" in self.known]  # `from pkg import submodule`
        self._add(node, names)


@functools.cache
def collect_imports() -> tuple[Import, ...]:
    files = module_files()
    known = set(files)
    imports: list[Import] = []
    for module, path in files.items():
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=str(path))
        collector = _ImportCollector(module, path, path.name == "__init__.py", known)
        collector.visit(tree)
        imports += collector.imports
    return tuple(imports)


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_graph(imports: tuple[Import, ...]) -> dict[str, dict[str, Import]]:
    """module -> {imported module: the first import line that imports it}, modules of the
    four packages only. `import a.b.c` also runs a/__init__ and a/b/__init__, so those are
    edges too, except to the importer's own ancestor packages: importing a sibling already
    runs them, and every module would otherwise sit in a cycle with its package's __init__
    (this also leaves out an explicit `from . import name` of the own package)."""
    known = set(module_files())
    graph: dict[str, dict[str, Import]] = {m: {} for m in known}
    for imp in imports:
        own = _ancestors(imp.module) | {imp.module}
        for name in imp.names:
            # the named module (when it is one of ours) and the packages above it
            targets = _ancestors(name) | {name}
            for target in sorted(targets & known - own):
                graph[imp.module].setdefault(target, imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), the ones with more than one
    module or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    components.append(sorted(component))
    return components


def _cycle_in(component: list[str], graph: dict[str, dict[str, Import]]) -> list[str]:
    """One simple cycle through the component's first module (breadth-first, so shortest)."""
    members, start = set(component), component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                if child in members and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # cannot happen in an SCC


def describe_cycles(graph: dict[str, dict[str, Import]]) -> list[str]:
    out = []
    for component in strongly_connected(graph):
        cycle = _cycle_in(component, graph)
        lines = [f"cycle among {len(component)} modules: {', '.join(component)}",
                 "  for example (cut one of these):"]
        for a, b in zip(cycle, cycle[1:] + cycle[:1]):
            lines.append(f"    {a} -> {b}   {graph[a][b].where}")
        inside = sum(len(set(graph[m]) & set(component)) for m in component) - len(cycle)
        if inside:
            lines.append(f"  ({inside} more imports inside this group; cut one above, rerun)")
        out.append("\n".join(lines))
    return out


def _source_line(imp: Import) -> str:
    return (ROOT / imp.path).read_text(encoding="utf-8").splitlines()[imp.line - 1].strip()


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _reference_imports() -> list[Import]:
    return [imp for imp in collect_imports()
            if imp.module == REFERENCE or imp.module.startswith(REFERENCE + ".")]


def legacy_bin_loaders() -> set[tuple[Path, int, int]]:
    """The functions allowed to `import torch`: in a numpy_gpt file that mentions both
    LEGACY_BIN_MARKERS (the Hugging Face importer), those that call
    torch.load(..., weights_only=True). The tree is parsed again here, so the nodes differ
    from collect_imports'; they are matched by (file, line) below."""
    allowed = set()
    for path in module_files().values():
        if path.parts[0] != REFERENCE:
            continue
        source = (ROOT / path).read_text(encoding="utf-8")
        if not all(marker in source for marker in LEGACY_BIN_MARKERS):
            continue
        for fn in ast.walk(ast.parse(source)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for call in ast.walk(fn):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "load" and isinstance(call.func.value, ast.Name)
                        and call.func.value.id == "torch"
                        and any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                                and k.value.value is True for k in call.keywords)):
                    allowed.add((path, fn.lineno, fn.end_lineno))
    return allowed


def _innermost_function_span(imp: Import) -> tuple[Path, int, int] | None:
    fn = imp.function
    return None if fn is None else (imp.path, fn.lineno, fn.end_lineno)


# --- static tests ------------------------------------------------------------------------------


def test_modules_are_found() -> None:
    """Guards the walk itself: an empty or misplaced scan would make every test below pass."""
    files = module_files()
    for package in PACKAGES:
        assert package in files, f"{package}/__init__.py not found under {ROOT}"
    assert sum(m.startswith(REFERENCE + ".") for m in files) >= 10
    assert any(imp.function is not None for imp in collect_imports()), "lazy imports not seen"


def test_resolution_and_cycle_finder_on_a_made_up_package() -> None:
    """The machinery on a made-up package, so a bug in it cannot pass the tests below."""
    source = textwrap.dedent("""
        from typing import TYPE_CHECKING
        from . import sib, attr
        from .a import B
        from ..top import C
        import pkg.a.deep
        if TYPE_CHECKING:
            from .never import D
        def f():
            from .lazy import E
    """)
    known = {"pkg", "pkg.sub", "pkg.sub.mod", "pkg.sub.sib", "pkg.sub.a", "pkg.sub.a.B",
             "pkg.top", "pkg.a", "pkg.a.deep", "pkg.sub.lazy"}
    collector = _ImportCollector("pkg.sub.mod", Path("pkg/sub/mod.py"), False, known)
    collector.visit(ast.parse(source))
    found = {imp.line: imp.names for imp in collector.imports}
    assert found == {2: ("typing",), 3: ("pkg.sub", "pkg.sub.sib"),
                     4: ("pkg.sub.a", "pkg.sub.a.B"), 5: ("pkg.top",), 6: ("pkg.a.deep",),
                     10: ("pkg.sub.lazy",)}
    assert [imp.function is not None for imp in collector.imports][-1]

    def edge(line: int) -> Import:
        return Import("m", Path("m.py"), line, (), None)

    graph = {"a": {"b": edge(1)}, "b": {"c": edge(2)}, "c": {"a": edge(3)}, "d": {"a": edge(4)},
             "e": {"e": edge(5)}, "f": {}}
    assert strongly_connected(graph) == [["a", "b", "c"], ["e"]]
    assert _cycle_in(["a", "b", "c"], graph) == ["a", "b", "c"]
    assert "m.py:3" in describe_cycles(graph)[0]


def test_no_import_cycles() -> None:
    cycles = describe_cycles(import_graph(collect_imports()))
    assert not cycles, (f"{len(cycles)} import cycle(s) among {', '.join(PACKAGES)} "
                        "(lazy imports inside functions count):\n" + "\n".join(cycles))


def test_numpy_gpt_never_imports_torch() -> None:
    """The reference twin never imports torch or torch_gpt; the one exception is `import torch`
    in the Hugging Face importer's function that reads a legacy pytorch_model.bin with
    torch.load(..., weights_only=True)."""
    allowed = legacy_bin_loaders()
    bad = []
    for imp in _reference_imports():
        hits = [n for n in imp.names if _matches(n, TORCH_ONLY)]
        if not hits:
            continue
        if hits == ["torch"] and _innermost_function_span(imp) in allowed:
            continue
        scope = f" (in {imp.function.name}())" if imp.function is not None else ""
        bad.append(f"  {imp.where}{scope}: {_source_line(imp)}")
    assert not bad, (f"{REFERENCE} imports torch / torch_gpt ({len(bad)} line(s)); move the "
                     "torch branch into torch_gpt (STYLE.md L2):\n" + "\n".join(bad))


def test_numpy_gpt_imports_no_apps_or_harnesses() -> None:
    others = tuple(p for p in FORBIDDEN_IN_REFERENCE if p not in TORCH_ONLY)
    bad = [f"  {imp.where}: {_source_line(imp)}" for imp in _reference_imports()
           if any(_matches(n, others) for n in imp.names)]
    assert not bad, (f"{REFERENCE} imports one of {', '.join(others)}:\n" + "\n".join(bad))


# numpy_gpt's folders from the bottom up: each imports only folders listed before it. The
# tokenizers sit below nn because a checkpoint carries its tokenizer (nn/checkpoint.py).
LAYERS = ("files", "tokenizers", "nn", "data", "training", "generation", "hf", "exercises",
          "twin", "cli")


def _folder(module: str) -> str | None:
    """numpy_gpt.nn.layers.linear -> "nn"; None for the package's own top-level files and for
    modules outside numpy_gpt."""
    parts = module.split(".")
    return parts[1] if parts[0] == REFERENCE and len(parts) > 1 else None


def test_numpy_gpt_folders_import_downward() -> None:
    found = {_folder(m) for m in module_files()} - {None, "__main__"}
    assert found == set(LAYERS), f"folders not placed in LAYERS: {found ^ set(LAYERS)}"
    bad = {}  # one line per import statement and folder
    for imp in _reference_imports():
        src = _folder(imp.module)
        for name in imp.names:
            dst = _folder(name)
            if src in LAYERS and dst in LAYERS and LAYERS.index(dst) > LAYERS.index(src):
                bad[imp.where, dst] = f"  {imp.where}: {src} imports {dst}: {_source_line(imp)}"
    assert not bad, ("numpy_gpt imports up its layers (" + " < ".join(LAYERS) + "):\n"
                     + "\n".join(bad.values()))


def test_torch_gpt_imports_no_harnesses() -> None:
    """torch_gpt builds on numpy_gpt only; parity and bench build on both."""
    bad = [f"  {imp.where}: {_source_line(imp)}" for imp in collect_imports()
           if imp.module.split(".")[0] == "torch_gpt"
           and any(_matches(n, ("parity", "bench", "tests")) for n in imp.names)]
    assert not bad, "torch_gpt imports parity, bench or tests:\n" + "\n".join(bad)


def test_design_imports_work_and_the_flat_layout_is_gone() -> None:
    """DESIGN.md's imports work; the first, flat layout's module paths do not (the folders are
    the only map: no alias finder, no second name for a module)."""
    import importlib

    from numpy_gpt import GPT, GPTConfig  # noqa: F401  (DESIGN.md)
    from numpy_gpt.data import TokenDataset
    from numpy_gpt.tokenizers import GPT2Tokenizer, load_tokenizer  # noqa: F401  (DESIGN.md)

    assert TokenDataset.__module__ == "numpy_gpt.data.dataset"
    for old in ("model", "train_config", "layers", "train_cli", "hf_export", "safe_io"):
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"numpy_gpt.{old}")


# --- behavioural tests: the CLI with torch missing -----------------------------------------------

BLOCKED = ("torch", "torch_gpt", "transformers")

# Runs `python -m numpy_gpt ARGS` with a finder in front of sys.meta_path that makes every
# import of BLOCKED (and their submodules) fail as if they were not installed; reports on
# stderr whether any of them got imported and which imports were attempted (and refused).
BOOTSTRAP = textwrap.dedent(f"""
    import importlib.abc, runpy, sys
    BLOCKED = {BLOCKED!r}
    attempts = []

    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)",
                                          name=name)
            return None

    sys.meta_path.insert(0, Missing())
    sys.argv = ["numpy_gpt", *sys.argv[1:]]
    code = 0
    try:
        runpy.run_module("numpy_gpt", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code
    finally:
        imported = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(f"TORCH_IMPORTED={{int(bool(imported))}} {{imported}}", file=sys.stderr)
        print(f"BLOCKED_ATTEMPTS={{sorted(set(attempts))}}", file=sys.stderr)
    sys.exit(code)
""")


def run_without_torch(*args: str | Path, stdin: str = "", timeout: float = 120
                      ) -> subprocess.CompletedProcess:
    """`python -m numpy_gpt ARGS` with torch, torch_gpt and transformers unimportable;
    asserts exit 0 and that none of them was imported (or even tried)."""
    cmd = [sys.executable, "-c", BOOTSTRAP, *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True,
                       timeout=timeout)
    shown = f"python -m numpy_gpt {' '.join(map(str, args))}"
    report = f"\n$ {shown}\n--- stdout ---\n{r.stdout}\n--- stderr ---\n{r.stderr}"
    assert r.returncode == 0, f"exit {r.returncode}{report}"
    assert "TORCH_IMPORTED=0" in r.stderr, f"torch got imported{report}"
    assert "BLOCKED_ATTEMPTS=[]" in r.stderr, f"tried to import a blocked module{report}"
    return r


TEXT = "\n".join([
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A small model learns the shapes of words one character at a time.",
    "Rain fell on the old stone bridge while the town slept below it.",
    "Every gradient written by hand is checked against its twin.",
]) + "\n"
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-iters", "1", "--eval-interval", "2", "--log-interval", "1",
        "--sample-tokens", "0", "--seed", "0", "--threads", "1", "--dtype", "float32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(prepared char dataset, run folder): prepare, train 4 steps, resume to 6, torch-free."""
    root = tmp_path_factory.mktemp("no-torch")
    (root / "input.txt").write_text(TEXT * 25, encoding="utf-8")  # ~6 KB
    data, run = root / "data", root / "run"
    run_without_torch("prepare", "--input", root / "input.txt", "--tokenizer", "char",
                      "--out", data)
    run_without_torch("train", "--dataset", data, "--out", run, *TINY, "--max-iters", "4",
                      "--no-plot")
    run_without_torch("train", "--resume", "--out", run, "--max-iters", "6", "--no-plot")
    return data, run


@pytest.mark.slow
def test_prepare_train_resume_without_torch(trained: tuple[Path, Path]) -> None:
    _, run = trained
    assert (run / "best").is_dir() and (run / "last").is_dir()
    assert '"iter": 6' in (run / "log.jsonl").read_text().splitlines()[-1]


@pytest.mark.slow
def test_sample_without_torch(trained: tuple[Path, Path]) -> None:
    run_without_torch("sample", "--ckpt", trained[1] / "best", "--max-new-tokens", "5",
                      "--seed", "0")


@pytest.mark.slow
def test_eval_without_torch(trained: tuple[Path, Path]) -> None:
    data, run = trained
    r = run_without_torch("eval", "--ckpt", run / "best", "--dataset", data, "--batch-size", "4",
                          "--max-batches", "2")
    assert "val loss" in r.stdout


@pytest.mark.slow
def test_chat_without_torch(tiny_chat: tuple[Path, Path]) -> None:
    r = run_without_torch("chat", "--ckpt", tiny_chat[1], "--max-new-tokens", "4", "--seed", "0",
                          stdin="hi i am ada\n")
    assert "bot>" in r.stdout


@pytest.mark.slow
def test_lora_finetune_and_chat_without_torch(tiny_chat: tuple[Path, Path], tmp_path: Path
                                              ) -> None:
    folder, ckpt = tiny_chat
    out = tmp_path / "ft"
    run_without_torch("finetune", "--ckpt", ckpt, "--dataset", folder, "--out", out, "--lora",
                      "--lora-rank", "2", "--max-iters", "4", "--eval-interval", "2",
                      "--eval-iters", "1", "--batch-size", "2", "--seed", "0", "--threads", "1",
                      "--no-plot")
    assert (out / "adapter").is_dir() and (out / "merged").is_dir()
    run_without_torch("chat", "--ckpt", ckpt, "--adapter", out / "adapter", "--max-new-tokens",
                      "4", "--seed", "0", stdin="hi i am bob\n")


@pytest.mark.slow
def test_gradcheck_without_torch() -> None:
    r = run_without_torch("gradcheck", "--layer", "layernorm", "--layer", "attention")
    assert "tensors ok" in r.stdout
