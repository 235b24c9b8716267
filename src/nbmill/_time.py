"""Times are UTC, written as ISO 8601 to the millisecond; run ids sort by time."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """``2026-11-29T02:15:02.311Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_from_timestamp(seconds: float) -> str:
    """``iso`` of a POSIX timestamp (``time.time()``)."""
    return iso(datetime.fromtimestamp(seconds, UTC))


def new_run_id(moment: datetime | None = None) -> str:
    """Sortable: UTC time to the millisecond, then 6 random hex digits."""
    moment = moment or utcnow()
    return (
        moment.strftime("%Y%m%dT%H%M%S")
        + f"{moment.microsecond // 1000:03d}Z-"
        + secrets.token_hex(3)
    )
