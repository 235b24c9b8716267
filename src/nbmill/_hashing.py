"""sha256 of files and folders, and the check of a folder against a recorded list of hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical(value: Any) -> str:
    """One JSON text for equal values, whatever their key order: what a hash is taken of
    (ledger lines, cache keys)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_path(path: Path, relative_to: Path) -> dict[str, str]:
    """sha256 of a file, or of every file under a folder, keyed by POSIX path from
    ``relative_to``."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {p.relative_to(relative_to).as_posix(): sha256_file(p) for p in files}


def tree_digest(folder: Path) -> str:
    """One sha256 for a folder: over its sorted ``relpath sha256`` lines (a model's identity)."""
    return digest_of(hash_path(folder, folder))


def digest_of(hashes: Mapping[str, str]) -> str:
    """The ``tree_digest`` of a folder whose files have these hashes."""
    return sha256_text("\n".join(f"{rel} {digest}" for rel, digest in sorted(hashes.items())))


def hash_tree(root: Path, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """Every file under ``root`` but hidden ones and ``exclude`` (relative POSIX paths)."""
    return {
        rel: digest
        for rel, digest in hash_path(root, root).items()
        if rel not in exclude and not Path(rel).name.startswith(".")
    }


def compare_hashes(
    root: Path, recorded: Mapping[str, str], actual: Mapping[str, str], manifest: str
) -> str | None:
    """The first difference between what ``manifest`` recorded and what is on disk, as a
    message naming the file, or None when they match."""
    for rel, digest in sorted(recorded.items()):
        if rel not in actual:
            return f"{Path(root) / rel}: missing (recorded in {manifest})"
        if actual[rel] != digest:
            return f"{Path(root) / rel}: sha256 differs from {manifest} (file changed)"
    extra = sorted(set(actual) - set(recorded))
    if extra:
        return f"{Path(root) / extra[0]}: not in {manifest} (file added)"
    return None
