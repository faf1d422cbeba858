"""Layers only point down (docs/architecture.md): every `tunecrew.*` import in each folder,
including imports inside functions, stays within what that layer may use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAY_IMPORT = {
    "tools": {"tools"},
    "memory": {"memory", "tools"},
    "agents": {"agents", "memory", "tools"},
    "scenarios": {"scenarios", "memory", "tools"},
    "app": {"app", "scenarios", "agents", "memory", "tools"},
}


def _imported_layers(path: Path, layer: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside the folder unless it climbs out of the layer
                depth = len(path.relative_to(ROOT / layer).parts) - 1
                if node.level > depth + 1:
                    found.add("<outside>")
                continue
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "tunecrew" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_each_layer_imports_only_the_layers_below_it(layer):
    folder = ROOT / layer
    assert folder.is_dir(), folder
    wrong = {str(p.relative_to(ROOT)): sorted(bad) for p in folder.rglob("*.py")
             if (bad := _imported_layers(p, layer) - MAY_IMPORT[layer])}
    assert not wrong, f"imports against the layering: {wrong}"
