"""The stage folders depend on each other one way, as ARCHITECTURE.md draws them: every import
between them (at the top of a module or inside a function) follows an edge of the drawing."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "nbmill"
# ARCHITECTURE.md's "Which way dependencies point", stage folder -> what it may import.
ALLOWED = {
    "cli": {"pipeline", "models", "serving", "monitor", "azure", "archive"}
    | {"records", "governance", "project"},
    "pipeline": {"archive", "records", "governance", "project"},
    "models": {"records", "governance", "project"},
    "serving": {"models", "records", "project"},
    "monitor": {"models", "records", "project"},
    "azure": {"pipeline", "monitor", "models", "project"},
    "archive": {"records", "governance", "project"},
    "lab": {"pipeline", "records", "project"},
    "records": {"governance", "project"},
    "governance": {"project"},
    "project": set(),
}


def stage_imports() -> dict[str, dict[str, list[str]]]:
    """stage -> imported stage -> the modules that import it."""
    stages = {p.name for p in SOURCE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    found: dict[str, dict[str, list[str]]] = {}
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE).parts
        if len(parts) < 2:
            continue  # a top-level module: a shared helper, tracking, collection
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nbmill."):
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("nbmill.")]
            for name in names:
                target = name.split(".")[1]
                if target in stages and target != parts[0]:
                    found.setdefault(parts[0], {}).setdefault(target, []).append(str(path))
    return found


def test_every_import_between_stage_folders_follows_the_drawing():
    wrong = {
        f"{stage} -> {target}": sorted(set(modules))
        for stage, targets in stage_imports().items()
        for target, modules in targets.items()
        if target not in ALLOWED[stage]
    }
    assert wrong == {}


def test_the_drawing_has_no_cycle():
    def reaches(start: str, goal: str, seen: frozenset = frozenset()) -> bool:
        return any(
            step == goal or (step not in seen and reaches(step, goal, seen | {step}))
            for step in ALLOWED[start]
        )

    assert [stage for stage in ALLOWED if reaches(stage, stage)] == []


def test_azure_ml_s_sdk_is_imported_only_by_the_azure_back_end():
    outside = [
        str(path)
        for path in SOURCE.rglob("*.py")
        if path.relative_to(SOURCE).parts[0] != "azure"
        and any(
            (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("azure.ai.ml"))
            or (
                isinstance(node, ast.Import)
                and any(a.name.startswith("azure.ai.ml") for a in node.names)
            )
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        )
    ]
    assert outside == []
