"""File helpers: atomic writes, so a reader never sees half a file; copies that share blocks
where the filesystem can."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no clones, copies
    fcntl = None

FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int), "make dest share src's blocks"


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def user_cache(kind: str) -> Path:
    """nbmill's folder for ``kind`` in the user's cache (``$XDG_CACHE_HOME`` or ~/.cache):
    answers worth keeping between runs, each safe to lose."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nbmill" / kind


def write_json(path: Path, value: Any, **options: Any) -> None:
    """``value`` as indented JSON (one trailing newline), written atomically."""
    write_atomic(path, json.dumps(value, indent=2, **options) + "\n")


def clone_or_copy(source: str, target: str) -> None:
    """A copy-on-write clone where the filesystem makes them (Btrfs, XFS, bcachefs...), else
    a plain copy; never a hard link.

    A clone shares the source's blocks on disk until either file is written, and a write to
    one never shows in the other: a sealed run and a copy of its files (a package, a cached
    step's outputs) stay independent, each checked by its own sha256s. (A hard link would be
    one file under two names: writing to the copy in place would change the sealed run, and
    ``nbmill verify`` would fail it.)"""
    try:
        _clone(source, target)
    except OSError:  # no clones here (ext4, tmpfs, another filesystem): copy the bytes
        shutil.copy2(source, target)
    else:
        shutil.copystat(source, target)


def _clone(source: str, target: str) -> None:
    """``ioctl(FICLONE)``: OSError where the platform or the filesystem has no clones."""
    if fcntl is None or not sys.platform.startswith("linux"):
        raise OSError(errno.EOPNOTSUPP, "copy-on-write clones need Linux", target)
    with open(source, "rb") as src, open(target, "wb") as dst:
        fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
