"""Imports run one way: a module imports only from its own layer or the layers below it.

    cli -> training -> methods, meta, inference, lm_adaptation, clip -> backbones, data, prompts, metrics, analysis -> utils

(CONTRIBUTING.md, "Layers"). Read from the source with ``ast``, function-level imports included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import promptlearn

SRC = Path(promptlearn.__file__).parent
LAYERS = [
    {"utils"},
    {"backbones", "data", "prompts", "metrics", "analysis"},
    {"methods", "meta", "inference", "lm_adaptation", "clip"},
    {"training"},
    {"cli"},
]


def layer_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    return next(i for i, names in enumerate(LAYERS) if part in names)


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("promptlearn"):
            found.append(node.module if node.module != "promptlearn" else f"promptlearn.{node.names[0].name}")
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("promptlearn.")]
    return found


def module_name(path: Path) -> str:
    return ".".join(("promptlearn", *path.relative_to(SRC).with_suffix("").parts))


def test_every_module_belongs_to_a_layer():
    for path in SRC.rglob("*.py"):
        if path.parent != SRC:
            layer_of(module_name(path))  # StopIteration: a package missing from LAYERS
    assert {p.name for p in SRC.glob("*.py")} == {"__init__.py", "metrics.py"}


def test_imports_run_down_the_layers():
    upward = []
    for path in SRC.rglob("*.py"):
        if path.name == "__init__.py" and path.parent == SRC:
            continue
        here = module_name(path)
        for target in imports(path):
            if layer_of(target) > layer_of(here):
                upward.append(f"{here} imports {target}")
    assert upward == []
