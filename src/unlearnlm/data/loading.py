"""Read the JSON Lines data files with errors that name the file, line and field."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from unlearnlm.data.bundle import BUNDLED_DIR, find_data_file, read_bytes
from unlearnlm.errors import DataError

DATA_DIR_ENV = "UNLEARNLM_DATA_DIR"


def data_source(data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """(data directory, where it came from): the argument (``--data-dir`` / ``data.data_dir``),
    else $UNLEARNLM_DATA_DIR, else the copy bundled with the package (``data/bundle.py``)."""
    if data_dir:
        path, source = Path(data_dir), "data.data_dir (--data-dir)"
    elif os.environ.get(DATA_DIR_ENV):
        path, source = Path(os.environ[DATA_DIR_ENV]), f"${DATA_DIR_ENV}"
    else:
        path, source = BUNDLED_DIR, "the copy bundled with unlearnlm"
    if not path.is_dir():
        raise DataError(f"data directory not found: {path} (from {source}); pass --data-dir or set {DATA_DIR_ENV}")
    return path.resolve(), source


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory (see ``data_source``)."""
    return data_source(data_dir)[0]


def _data_file(path: str | os.PathLike) -> Path:
    """The file holding ``path`` (itself or ``path.gz``), or one DataError naming ``path``."""
    found = find_data_file(Path(path))
    if found is None:
        raise DataError(f"{path}: file not found")
    return found


def _read_text(path: Path) -> str:
    """The file as text (universal newlines; a UTF-8 BOM is ignored; ``.gz`` decompressed),
    or one DataError."""
    try:
        return read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except (OSError, EOFError) as e:  # EOFError, gzip.BadGzipFile (an OSError): a damaged .gz
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def read_jsonl(
    path: str | os.PathLike,
    required: Iterable[str] = (),
    list_fields: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file. Every row must be an object holding ``required`` fields
    (non-empty strings unless listed in ``list_fields``, which must be non-empty lists of strings).
    Blank lines are skipped."""
    path = _data_file(path)
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
    path = _data_file(path)
    lines = [l.strip() for l in _read_text(path).split("\n") if l.strip()]
    if not lines:
        raise DataError(f"{path}: no lines")
    return lines
