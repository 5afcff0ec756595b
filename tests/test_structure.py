"""The code's shape, read from the source: one errors module, no upward imports, no import cycles."""

from __future__ import annotations

import ast
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
