"""Read the JSON Lines data files with errors that name the file, line and field."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from unlearnlm.errors import DataError

DATA_DIR_ENV = "UNLEARNLM_DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else $UNLEARNLM_DATA_DIR, else ../shared/data or ./data."""
    candidates: list[Path]
    if data_dir:
        candidates = [Path(data_dir)]
    elif os.environ.get(DATA_DIR_ENV):
        candidates = [Path(os.environ[DATA_DIR_ENV])]
    else:
        candidates = [Path.cwd().parent / "shared" / "data", Path.cwd() / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"data directory not found (tried {tried}); pass --data-dir or set {DATA_DIR_ENV}"
    )


def _read_text(path: Path) -> str:
    """The file as text (universal newlines; a UTF-8 BOM is ignored), or one DataError."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def read_jsonl(
    path: str | os.PathLike,
    required: Iterable[str] = (),
    list_fields: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file. Every row must be an object holding ``required`` fields
    (non-empty strings unless listed in ``list_fields``, which must be non-empty lists of strings).
    Blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    required = tuple(required)
    list_fields = set(list_fields)
    rows = []
    # Split on "\n" only: str.splitlines() also breaks at U+2028, U+0085..., which JSON
    # allows unescaped inside strings (valid rows were rejected, line numbers shifted).
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg}, column {e.colno})") from None
        except (ValueError, RecursionError) as e:  # e.g. a 5,000-digit number, [[[[... nesting
            reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).split(":")[0]
            raise DataError(f"{path}:{lineno}: malformed JSON ({reason})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        for field in required:
            value = row.get(field)
            if field not in row:
                raise DataError(f"{path}:{lineno}: missing field {field!r}")
            if field in list_fields:
                ok = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
                if not ok:
                    raise DataError(f"{path}:{lineno}: field {field!r} must be a non-empty list of strings")
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and field == "task_id":
                row[field] = str(value)
            elif not isinstance(value, str) or not value.strip():
                raise DataError(f"{path}:{lineno}: field {field!r} must be a non-empty string")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def read_lines(path: str | os.PathLike) -> list[str]:
    """Non-empty stripped lines of a plain-text file (the IDK refusals)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    lines = [l.strip() for l in _read_text(path).split("\n") if l.strip()]
    if not lines:
        raise DataError(f"{path}: no lines")
    return lines
