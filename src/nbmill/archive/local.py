"""An archive in a local folder (or a shared file system): each object a file, written to a
temporary name and renamed into place; an append-only object appended under a file lock, after
checking its length."""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock

from nbmill.archive.base import Archive, ArchiveError, Conflict

HIDDEN = (".partial", ".lock")


class LocalArchive(Archive):
    def __init__(self, root: Path):
        self.root = Path(root)
        self.url = self.root.as_uri()

    @classmethod
    def from_url(cls, url: str, project_dir: Path | None = None) -> LocalArchive:
        path = Path(url.removeprefix("file://"))
        if not path.is_absolute():
            path = Path(project_dir or Path.cwd()) / path
        return cls(path.resolve())

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise ArchiveError(f"archive key {key!r}: not a relative key")
        return self.root / key

    def put(self, key: str, data: bytes, overwrite: bool = False) -> bool:
        path = self._path(key)
        if path.exists() and not overwrite:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, path)
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read(self, key: str, start: int = 0) -> bytes | None:
        path = self._path(key)
        if not path.is_file():
            return None
        with open(path, "rb") as handle:
            handle.seek(start)
            return handle.read()

    def keys(self, prefix: str = "") -> dict[str, str]:
        base = self.root / prefix if prefix else self.root
        folder = base if base.is_dir() else base.parent
        if not folder.is_dir():
            return {}
        found = {}
        for path in folder.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.endswith(HIDDEN):
                stat = path.stat()
                found[key] = f"{stat.st_mtime_ns}-{stat.st_size}"
        return dict(sorted(found.items()))

    def size(self, key: str) -> int:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else 0

    def append(self, key: str, data: bytes, at: int) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=60):
            if self.size(key) != at:
                raise Conflict(f"{self.url}/{key}: another writer appended first")
            with open(path, "ab") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            return at + len(data)
