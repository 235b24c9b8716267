"""Package a model for a deployment target: the MLflow model folder plus environment.yml.

The same package serves locally and, later, on Azure ML: one format, one environment.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nbmill._fs import clone_or_copy, write_json
from nbmill._hashing import compare_hashes, hash_path, tree_digest
from nbmill.collection import BASELINE_FILE
from nbmill.errors import NbmillError

TARGETS = ("local",)
MANIFEST = "package.json"


def package_model(
    model_dir: str | Path,
    target_dir: str | Path,
    environment: str | Path,
    target: str = "local",
    model: dict[str, str] | None = None,
) -> dict:
    """Copy the model (cloned where the filesystem can, see ``_fs.clone_or_copy``) and environment
    into ``target_dir`` with a manifest of sha256s, the model's registered ``name`` and
    ``version`` when given, and its baseline profile's path."""
    if target not in TARGETS:
        raise NbmillError(f"unknown deployment target '{target}' (targets: {', '.join(TARGETS)})")
    model_dir, target_dir, environment = Path(model_dir), Path(target_dir), Path(environment)
    if not (model_dir / "MLmodel").is_file():
        raise NbmillError(f"{model_dir}: not an MLflow model folder (no MLmodel file)")
    if not environment.is_file():
        raise NbmillError(f"{environment}: environment file not found")
    if target_dir.exists():
        shutil.rmtree(target_dir)
    shutil.copytree(model_dir, target_dir / "model", copy_function=clone_or_copy)
    shutil.copy2(environment, target_dir / "environment.yml")
    baselines = sorted((target_dir / "model").rglob(BASELINE_FILE))
    manifest = {
        "target": target,
        "format": "mlflow",
        "model": model or {},
        "model_sha256": tree_digest(target_dir / "model"),
        "baseline": baselines[0].relative_to(target_dir).as_posix() if baselines else None,
        "files": hash_path(target_dir, target_dir),
    }
    write_json(target_dir / MANIFEST, manifest)
    return manifest


def read_manifest(target_dir: str | Path) -> dict:
    path = Path(target_dir) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NbmillError(f"{target_dir}: no {MANIFEST}; is this a package?") from None
    except json.JSONDecodeError as exc:
        raise NbmillError(f"{path}: not valid JSON ({exc})") from None


def verify_package(target_dir: str | Path) -> dict:
    """The manifest, if every file matches it; else NbmillError naming the first difference."""
    target_dir = Path(target_dir)
    manifest = read_manifest(target_dir)
    actual = {k: v for k, v in hash_path(target_dir, target_dir).items() if k != MANIFEST}
    problem = compare_hashes(target_dir, manifest["files"], actual, "the package manifest")
    if problem:
        raise NbmillError(problem)
    return manifest
