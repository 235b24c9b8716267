"""Where records and the ledger live beyond one machine: one small interface (``base.Archive``)
with a local folder (``local.py``) and Azure Blob Storage (``azure_blob.py``), one file each, so
another store is one more file; what is kept there: sealed run records (``records.py``) and one
hash-chained ledger that every writer appends to (``ledger.py``)."""

from __future__ import annotations

from nbmill.archive.base import Archive, ArchiveError, Conflict, open_archive

__all__ = ["Archive", "ArchiveError", "Conflict", "open_archive"]
