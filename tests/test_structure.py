"""The code's shape, read from the source: one errors module, no upward imports, no import cycles."""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys
from pathlib import Path

from extract import errors

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("extract", "ace_etl", "flows")


def _sources() -> dict[str, Path]:
    """Every module of the packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def test_every_error_class_is_in_the_errors_module_and_its_tree() -> None:
    """A failure type defined elsewhere, or missing from the docstring's tree at its depth, fails this."""
    bases = {}
    for module, path in _sources().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                bases[node.name, module] = [n.rsplit(".", 1)[-1] for n in names]
    ours = {("AceEtlError", errors.__name__)}
    while grown := {c for c, of in bases.items() if set(of) & {name for name, _ in ours}} - ours:
        ours |= grown
    outside = sorted(f"{module}.{name}" for name, module in ours if module != errors.__name__)
    assert outside == [], "define these in extract/errors.py"

    tree = errors.__doc__ or ""
    for name, _ in sorted(ours):
        cls = getattr(errors, name)
        depth = cls.__mro__.index(errors.AceEtlError)
        assert f"\n{'  ' * depth}* {name} - " in tree, f"{name} is not drawn at depth {depth}"


class _RunTimeOnly(ast.NodeTransformer):
    """Drops `if TYPE_CHECKING:` blocks: what only the type checker imports is no import at run time."""

    def visit_If(self, node: ast.If) -> ast.AST | None:
        return None if ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING") else node


def _imports() -> dict[str, set[str]]:
    """What each module imports at run time, anywhere in it (inside functions too): modules of the packages
    by their dotted names, others by their top-level name."""
    sources = _sources()
    found: dict[str, set[str]] = {}
    for module, path in sources.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        names = set()
        for node in ast.walk(_RunTimeOnly().visit(ast.parse(path.read_text()))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                )
                target = ".".join(part for part in (base, node.module or "") if part)
                names |= {target, *(f"{target}.{alias.name}" for alias in node.names)}
        found[module] = {
            name if name in sources else name.split(".")[0]
            for name in names
            if name in sources or name.split(".")[0] not in PACKAGES
        } - {module}
    return found


def test_no_module_imports_a_layer_above_it() -> None:
    """extract is a plain library (no Prefect, nothing of the CLI or flows); ace_etl never needs flows."""
    above = {"extract": ("ace_etl", "flows", "prefect", "prefect_dbt", "prefect_dask"), "ace_etl": ("flows",)}
    upward = sorted(
        f"{module} imports {name}"
        for module, names in _imports().items()
        for name in names
        if name.split(".")[0] in above.get(module.split(".")[0], ())
    )
    assert upward == []


# extract's packages, lowest first: the top-level modules (errors, config, cancel, windows, redact), the
# landing, the API, a run. A module imports only from its own package and those before it.
_EXTRACT_LAYERS = ("extract", "extract.lake", "extract.api", "extract.run")


def test_extract_packages_import_only_the_packages_below_them() -> None:
    def layer(module: str) -> int:
        package = ".".join(module.split(".")[:2])
        return _EXTRACT_LAYERS.index(package if package in _EXTRACT_LAYERS else "extract")

    upward = sorted(
        f"{module} imports {name}"
        for module, names in _imports().items()
        if module.startswith("extract")
        for name in names
        if name.startswith("extract.") and layer(name) > layer(module)
    )
    assert upward == []


def test_no_import_cycle() -> None:
    modules = _sources().keys()
    ours = {module: names & modules for module, names in _imports().items()}
    try:
        graphlib.TopologicalSorter(ours).prepare()
    except graphlib.CycleError as cycle:
        raise AssertionError(f"import cycle: {' -> '.join(reversed(cycle.args[1]))}") from None


# What spells a landing path: its folders and its partition and file-name parts.
_LAYOUT = re.compile(
    r"landing/|state/|quarantine/|site_name=|date=|site_key=|_delta_log|\.reason\.txt|^quarantine$"
)
# Not the landing's layout: the local storage's own lock file (below the layout, which builds on `Storage`),
# and the pre-Delta folders that `extract.run.upgrade` converts.
_NOT_THE_LAYOUT = {("extract.lake.storage", "state/.landing.lock"), ("extract.run.upgrade", "site_name=")}


def test_only_the_layout_object_spells_a_landing_path() -> None:
    """A landing path formatted or parsed outside `extract.lake.landing` (documentation aside) fails this."""
    spelled = []
    for module, path in _sources().items():
        tree = ast.parse(path.read_text())
        # Strings standing alone are documentation (module, class, function and attribute docstrings).
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        spelled += [
            f"{module}:{node.lineno} {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and _LAYOUT.search(node.value)
            and module != "extract.lake.landing"
            and (module, node.value) not in _NOT_THE_LAYOUT
        ]
    assert spelled == [], "format or parse landing paths through extract.lake.landing"


def test_the_run_commands_modules_import_neither_pyarrow_nor_pandas() -> None:
    # What `ace-etl run` imports before its first request delays every run: pyarrow (with numpy) is imported
    # where it is used, and nothing in the extraction needs pandas.
    code = "import sys, ace_etl.cli, ace_etl.runner, extract.run.pipeline; print(sorted({'pyarrow', 'numpy', 'pandas'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"
