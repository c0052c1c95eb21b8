"""The layer rules of docs/architecture.md, checked against the imports the code has."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "evo_rl"

# layer -> the layers it may import (besides itself); the diagram in docs/architecture.md shows the same
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "sim": {"config", "errors"},
    "rewards": {"sim", "config", "errors"},
    "envs": {"sim", "rewards", "config", "errors"},
    "memory": {"config", "errors"},
    "nets": {"config", "errors"},
    "algos": {"nets", "memory", "config", "errors"},
    "train": {"algos", "memory", "envs", "games", "rewards", "sim", "config", "errors"},
    "games": {"envs", "rewards", "sim", "config", "errors"},
    "dist": {"train", "algos", "memory", "envs", "games", "rewards", "sim", "config", "errors"},
    "bench": {"dist", "train", "algos", "memory", "envs", "rewards", "sim", "games", "config", "errors"},
    "cli": {
        "dist",
        "train",
        "bench",
        "games",
        "algos",
        "memory",
        "envs",
        "rewards",
        "sim",
        "config",
        "errors",
        "evo_rl",
    },
    "__main__": {"cli"},  # python -m evo_rl
    "evo_rl": {"config", "envs", "errors"},  # the package's __init__ (registers the Gymnasium ids)
}


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    if len(parts) > 1:
        return parts[0]
    return "evo_rl" if parts[0] == "__init__.py" else path.stem


def _literal_prefix(arg: ast.expr) -> str:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value)
    return ""


def imports_by_layer() -> dict[str, dict[str, str]]:
    """layer -> {imported layer: first file that imports it}, lazy imports included."""
    found: dict[str, dict[str, str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = _layer(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
                names = [_literal_prefix(node.args[0])]  # importlib.import_module("evo_rl.x...") / f"evo_rl.x.{name}"
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] != "evo_rl":
                    continue
                target = parts[1] if len(parts) > 1 else "evo_rl"
                if target != layer:
                    found.setdefault(layer, {}).setdefault(target, str(path.relative_to(ROOT)))
    return found


def test_every_layer_is_known() -> None:
    assert set(imports_by_layer()) <= set(ALLOWED)


def test_imports_follow_the_layer_rules() -> None:
    wrong = [
        f"{layer} imports {target} ({where})"
        for layer, targets in imports_by_layer().items()
        for target, where in targets.items()
        if target not in ALLOWED[layer]
    ]
    assert not wrong, "imports against docs/architecture.md: " + "; ".join(wrong)


def test_the_diagram_shows_the_imports_the_code_has() -> None:
    """Every arrow the code has appears in the diagram's line for that layer, and no other."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("```", 2)[1]
    drawn: dict[str, set[str]] = {}
    for line in block.splitlines():
        m = re.match(r"\s*(\w+)\s+->\s+(.*)$", line)
        if m:
            drawn[m.group(1)] = set(re.findall(r"\w+", m.group(2))) - {"none"}
    actual = {layer: set(targets) for layer, targets in imports_by_layer().items()}
    for layer in actual.keys() | drawn.keys():
        assert drawn.get(layer, set()) == actual.get(layer, set()), (
            f"docs/architecture.md draws {layer} -> {sorted(drawn.get(layer, set()))}, "
            f"the code has {layer} -> {sorted(actual.get(layer, set()))}"
        )
