"""Alias history from the ledger: every move of every alias, who, why and when, and which
version held an alias at a given time. The ledger is the source of truth (hash-chained, one
append per move): a registry tag rewritten by two promotions at once can lose an entry."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from nbmill.errors import NbmillError

PRODUCTION = "production"


def moves(events: Iterable[dict[str, Any]], name: str, alias: str | None = None) -> list[dict]:
    """Each alias move of model ``name`` (``nbmill.model.promoted``), oldest first."""
    found = []
    for event in events:
        data = event.get("data") or {}
        if event.get("type") != "nbmill.model.promoted" or data.get("model") != name:
            continue
        if alias is not None and data.get("alias") != alias:
            continue
        found.append(
            {
                "time": event["time"],
                "alias": data.get("alias"),
                "version": str(data.get("version")),
                "from": None
                if data.get("previous_version") is None
                else str(data["previous_version"]),
                "action": data.get("action"),
                "who": data.get("who"),
                "why": data.get("why"),
                "run_id": data.get("run_id"),
            }
        )
    return found


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise NbmillError(f"'{text}': not an ISO 8601 time, such as 2026-05-03T14:05Z") from None
    if moment.tzinfo is None:
        raise NbmillError(f"'{text}': give a time zone, such as 2026-05-03T14:05Z (UTC)")
    return moment


def holder_at(history: list[dict], alias: str, at: str) -> dict | None:
    """The move that put ``alias`` where it was at ``at`` (None: it pointed nowhere yet)."""
    when = _moment(at)
    held = None
    for move in history:
        if move["alias"] == alias and _moment(move["time"]) <= when:
            held = move
    return held


def production_stack(history: list[dict]) -> list[str]:
    """The versions production went through, replayed from the ledger: a promotion pushes its
    version, a rollback goes back to the version it moved to."""
    stack: list[str] = []
    for move in history:
        if move["alias"] != PRODUCTION:
            continue
        if move["action"] == "rollback" and move["version"] in stack:
            while stack and stack[-1] != move["version"]:
                stack.pop()
        elif not stack or stack[-1] != move["version"]:
            stack.append(move["version"])
    return stack
