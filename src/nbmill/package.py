"""Package a model for a deployment target: the MLflow model folder plus environment.yml.

The same package serves locally and, later, on Azure ML: one format, one environment.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nbmill.errors import NbmillError
from nbmill.record import hash_path, tree_digest, write_atomic

TARGETS = ("local",)
MANIFEST = "package.json"


def package_model(
    model_dir: str | Path, target_dir: str | Path, environment: str | Path, target: str = "local"
) -> dict:
    """Copy the model and environment into ``target_dir`` with a manifest of sha256s."""
    if target not in TARGETS:
        raise NbmillError(f"unknown deployment target '{target}' (targets: {', '.join(TARGETS)})")
    model_dir, target_dir, environment = Path(model_dir), Path(target_dir), Path(environment)
    if not (model_dir / "MLmodel").is_file():
        raise NbmillError(f"{model_dir}: not an MLflow model folder (no MLmodel file)")
    if not environment.is_file():
        raise NbmillError(f"{environment}: environment file not found")
    if target_dir.exists():
        shutil.rmtree(target_dir)
    shutil.copytree(model_dir, target_dir / "model")
    shutil.copy2(environment, target_dir / "environment.yml")
    manifest = {
        "target": target,
        "format": "mlflow",
        "model_sha256": tree_digest(target_dir / "model"),
        "files": hash_path(target_dir, target_dir),
    }
    write_atomic(target_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify_package(target_dir: str | Path) -> None:
    """Raise if any file differs from the manifest written when the package was made."""
    target_dir = Path(target_dir)
    manifest = json.loads((target_dir / MANIFEST).read_text(encoding="utf-8"))
    actual = {k: v for k, v in hash_path(target_dir, target_dir).items() if k != MANIFEST}
    for rel, digest in manifest["files"].items():
        if actual.get(rel) != digest:
            raise NbmillError(f"{target_dir / rel}: sha256 differs from the package manifest")
    extra = sorted(set(actual) - set(manifest["files"]))
    if extra:
        raise NbmillError(f"{target_dir / extra[0]}: file is not in the package manifest")
