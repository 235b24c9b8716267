"""The archive interface: objects under "/"-separated keys, each written whole or not at all,
and append-only objects whose appends are conditional on the length the writer read.

Chosen by URL (``--archive``, ``NBMILL_ARCHIVE``, or ``archive:`` in nbmill.yml): a folder path
or ``file://`` for a local folder, ``az://CONTAINER/PREFIX`` for Azure Blob Storage. Nothing
secret is in the URL: Azure's account comes from the environment (``azure_blob.py``). A new
store (S3, GCS) is one more module that implements ``Archive`` and one line in ``BACKENDS``,
as papermill's I/O handlers are registered by scheme.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path

from nbmill.errors import NbmillError

# Each back end by URL scheme, as "module:class": Azure's client loads only when asked for.
BACKENDS = {
    "file": "nbmill.archive.local:LocalArchive",
    "az": "nbmill.archive.azure_blob:AzureBlobArchive",
}


class ArchiveError(NbmillError):
    """The archive cannot be reached or refused a request; the message names the setting."""


class Conflict(ArchiveError):
    """A conditional append lost: another writer appended first."""


class Archive(ABC):
    """One archive. Keys are relative and "/"-separated."""

    url: str

    @abstractmethod
    def put(self, key: str, data: bytes, overwrite: bool = False) -> bool:
        """Store ``data`` under ``key`` whole (a reader sees all of it or nothing); True when
        written, False when the key exists and ``overwrite`` is False (nothing is sent)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""

    @abstractmethod
    def read(self, key: str, start: int = 0) -> bytes | None:
        """The object's bytes from ``start`` on, or None when there is no such key."""

    @abstractmethod
    def keys(self, prefix: str = "") -> dict[str, str]:
        """Every key under ``prefix`` with a token that changes whenever its object does (an
        ETag), sorted by key: one listing, no object read."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The length of the append-only object ``key`` (0 when it does not exist yet)."""

    @abstractmethod
    def append(self, key: str, data: bytes, at: int) -> int:
        """Append ``data`` to ``key`` if its length is still ``at``; returns the new length.
        Conflict when another writer appended since (the caller re-reads and retries)."""

    def tail(self, key: str, limit: int = 1 << 16) -> tuple[int, bytes]:
        """The append-only object's length and its last ``limit`` bytes at most."""
        size = self.size(key)
        if size == 0:
            return 0, b""
        return size, self.read(key, max(0, size - limit)) or b""


def open_archive(url: str, project_dir: Path | None = None) -> Archive:
    """The archive at ``url``; a relative folder is relative to the project."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme not in BACKENDS:
        raise ArchiveError(
            f"archive {url!r}: unknown scheme '{scheme}://' (known: a folder, file://, az://)"
        )
    module, _, name = BACKENDS[scheme].partition(":")
    return getattr(importlib.import_module(module), name).from_url(url, project_dir)
