"""Scoring requests: the body's shapes, checked against the model signature, into a matrix.

Azure ML's shape for MLflow models ``{"input_data": {"columns": [...], "data": [[...]]}}``,
MLflow's ``dataframe_split`` / ``dataframe_records``, or a plain list of records. Every problem
is an ``InputError`` whose message names it and whose status is the 4xx to answer with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nbmill.errors import NbmillError

MAX_ROWS = 10_000
NUMERIC = {"double": float, "float": float, "long": int, "integer": int}


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    """The model folder's MLmodel file, parsed."""
    path = Path(model_dir) / "MLmodel"
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise NbmillError(f"{model_dir}: not an MLflow model folder (no MLmodel file)") from None


class InputError(Exception):
    """A request the client must fix: answered with ``status`` and this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
        self.sent: tuple[list[str], list[Any]] | None = None  # the rows, when they were rows
        self.unread = 0  # a 413 sent before the whole body was read


@dataclass(frozen=True)
class Signature:
    columns: tuple[str, ...]
    types: tuple[str, ...]

    @classmethod
    def from_mlmodel(cls, mlmodel: dict[str, Any], model_dir: Path) -> Signature:
        """The input signature of a parsed MLmodel file (``read_mlmodel``)."""
        inputs = (mlmodel.get("signature") or {}).get("inputs")
        if not inputs:
            raise NbmillError(f"{model_dir}: the model has no input signature; log it with one")
        spec = json.loads(inputs)
        if any("name" not in col for col in spec):
            raise NbmillError(f"{model_dir}: only column-based signatures can be served")
        types = tuple(col.get("type", "") for col in spec)
        unsupported = sorted({t for t in types if t not in NUMERIC})
        if unsupported:
            raise NbmillError(f"{model_dir}: column types {unsupported} are not served yet")
        return cls(tuple(col["name"] for col in spec), types)


def _cell_error(value: Any, kind: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number ({kind}), got {type(value).__name__} {value!r}"[:200]
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not allowed"
    if kind in ("long", "integer") and isinstance(value, float) and not value.is_integer():
        return f"expected a whole number ({kind}), got {value!r}"
    return None


def parse_request(body: bytes, signature: Signature, max_rows: int = MAX_ROWS) -> np.ndarray:
    """The request's rows as a float matrix in signature order, or InputError naming the problem."""
    if not body.strip():
        raise InputError(
            'empty body: send JSON such as {"input_data": {"columns": [...], "data": [[...]]}}'
        )
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise InputError("the JSON is nested too deeply to read") from None
    columns, rows = _columns_and_rows(payload, signature)
    try:
        return _matrix(columns, rows, signature, max_rows)
    except InputError as exc:
        if len(rows) <= max_rows:  # collected as sent, so that data quality sees them
            exc.sent = (columns, rows)
        raise


def _matrix(columns: list[str], rows: list[Any], signature: Signature, max_rows: int):
    if not rows:
        raise InputError("no rows to score")
    if len(rows) > max_rows:
        raise InputError(f"{len(rows)} rows is more than the limit of {max_rows}", status=413)
    wanted = signature.columns
    missing = [c for c in wanted if c not in columns]
    extra = [c for c in columns if c not in wanted]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing columns: {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected columns: {', '.join(map(str, extra))}")
        raise InputError("; ".join(parts) + f" (the model takes: {', '.join(wanted)})")
    if len(set(columns)) != len(columns):
        raise InputError("a column is named twice")
    width = len(columns)
    clean = all(
        isinstance(row, list)
        and len(row) == width
        and all(type(v) is float or type(v) is int for v in row)
        for row in rows
    )
    if clean:
        matrix = np.array(rows, dtype=np.float64)
        if np.isfinite(matrix).all() and not _has_fractional_long(matrix, columns, signature):
            return _in_order(matrix, columns, wanted)
    _raise_first_bad_cell(rows, columns, signature)
    raise InputError("could not read the rows")  # unreachable when a bad cell exists


def _columns_and_rows(payload: Any, signature: Signature) -> tuple[list[str], list[Any]]:
    if isinstance(payload, dict):
        for key in ("input_data", "dataframe_split"):
            if key in payload:
                split = payload[key]
                if not isinstance(split, dict) or "data" not in split:
                    raise InputError(f"'{key}' must hold 'columns' and 'data'")
                columns = split.get("columns", list(signature.columns))
                if not isinstance(columns, list) or not isinstance(split["data"], list):
                    raise InputError(f"'{key}.columns' and '{key}.data' must be lists")
                return [str(c) for c in columns], split["data"]
        if "dataframe_records" in payload:
            payload = payload["dataframe_records"]
        else:
            raise InputError(
                "unknown request shape: expected 'input_data', 'dataframe_split', "
                "'dataframe_records' or a list of records"
            )
    if isinstance(payload, list):
        if not payload:
            return list(signature.columns), []
        if not all(isinstance(r, dict) for r in payload):
            raise InputError("a list body must hold records: objects mapping column to value")
        columns = list(payload[0])
        for index, record in enumerate(payload):
            if list(record) != columns and set(record) != set(columns):
                raise InputError(f"record {index} has different columns from record 0")
        return columns, [[record[c] for c in columns] for record in payload]
    raise InputError("the body must be a JSON object or a list of records")


def _has_fractional_long(matrix: np.ndarray, columns: list[str], signature: Signature) -> bool:
    kinds = dict(zip(signature.columns, signature.types, strict=True))
    longs = [i for i, c in enumerate(columns) if kinds[c] in ("long", "integer")]
    return bool(longs) and not np.all(np.mod(matrix[:, longs], 1) == 0)


def _in_order(matrix: np.ndarray, columns: list[str], wanted: tuple[str, ...]) -> np.ndarray:
    if tuple(columns) == wanted:
        return matrix
    index = {c: i for i, c in enumerate(columns)}
    return matrix[:, [index[c] for c in wanted]]


def _raise_first_bad_cell(rows: list[Any], columns: list[str], signature: Signature) -> None:
    kinds = dict(zip(signature.columns, signature.types, strict=True))
    for r, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            size = len(row) if isinstance(row, list) else type(row).__name__
            raise InputError(f"row {r}: expected {len(columns)} values, got {size}")
        for column, value in zip(columns, row, strict=True):
            problem = _cell_error(value, kinds[column])
            if problem:
                raise InputError(f"row {r}, column '{column}': {problem}")
