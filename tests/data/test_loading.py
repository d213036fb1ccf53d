"""read_jsonl / read_lines / resolve_data_dir: one DataError naming file, line and field, or valid rows."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unlearnlm.data.loading import DATA_DIR_ENV, read_jsonl, read_lines, resolve_data_dir
from unlearnlm.errors import DataError

QA = ("question", "answer")


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


# --------------------------------------------------------------------------- resolve_data_dir
def test_resolve_data_dir_argument(tmp_path):
    assert resolve_data_dir(tmp_path) == tmp_path.resolve()


def test_resolve_data_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert resolve_data_dir() == tmp_path.resolve()


def test_resolve_data_dir_default_is_the_bundled_copy_wherever_the_cwd(tmp_path, monkeypatch):
    from unlearnlm.data.bundle import BUNDLED_DIR
    from unlearnlm.data.loading import data_source

    (tmp_path / "shared" / "data").mkdir(parents=True)  # no longer looked for next to the cwd
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path / "shared")
    path, source = data_source()
    assert path == BUNDLED_DIR.resolve() and "bundled" in source


def test_resolve_data_dir_argument_beats_env_beats_bundled(tmp_path, monkeypatch):
    from unlearnlm.data.loading import data_source

    (tmp_path / "arg").mkdir()
    (tmp_path / "env").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    assert data_source(tmp_path / "arg") == ((tmp_path / "arg").resolve(), "data.data_dir (--data-dir)")
    assert data_source() == ((tmp_path / "env").resolve(), f"${DATA_DIR_ENV}")


def test_resolve_data_dir_missing(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as err:
        resolve_data_dir(missing)
    msg = str(err.value)
    assert str(missing) in msg and "--data-dir" in msg and DATA_DIR_ENV in msg
    assert "\n" not in msg


def test_resolve_data_dir_default_holds_the_tofu_and_real_world_folders(data_dir):
    assert (data_dir / "tofu").is_dir() and (data_dir / "real_world").is_dir()


# --------------------------------------------------------------------------- read_jsonl
def test_read_jsonl_valid_rows_blank_lines_and_crlf(tmp_path):
    path = _write(tmp_path / "a.json",
                  '{"question": "q1", "answer": "a1"}\r\n\r\n   \n{"question": "q2", "answer": "a2", "x": 1}\n')
    rows = read_jsonl(path, QA)
    assert rows == [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2", "x": 1}]


def test_read_jsonl_line_numbers_count_blank_lines(tmp_path):
    path = _write(tmp_path / "a.json", '{"question": "q", "answer": "a"}\n\n\n{"question": "q"}\n')
    with pytest.raises(DataError, match=r":4: missing field 'answer'"):
        read_jsonl(path, QA)


def test_read_jsonl_unicode_line_separators_inside_strings(tmp_path):
    # JSON allows U+2028/U+2029/U+0085 unescaped in strings; they are not line breaks of the file.
    rows = [{"question": f"q{sep}still q", "answer": "a"} for sep in ("\u2028", "\u2029", "\x85", "\x0c", "\x1e")]
    path = _write(tmp_path / "a.json", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
                  + '{"question": "q"}\n')
    with pytest.raises(DataError, match=r"a\.json:6: missing field 'answer'"):
        read_jsonl(path, QA)
    _write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert read_jsonl(path, QA) == rows


def test_read_jsonl_utf8_bom_is_ignored(tmp_path):
    path = _write(tmp_path / "a.json", b'\xef\xbb\xbf{"question": "q", "answer": "a"}\n')
    assert read_jsonl(path, QA) == [{"question": "q", "answer": "a"}]


def test_read_jsonl_not_utf8(tmp_path):
    path = _write(tmp_path / "a.json", b'{"question": "caf\xe9", "answer": "a"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        read_jsonl(path, QA)


def test_read_jsonl_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path / "missing.json", QA)
    with pytest.raises(DataError, match="file not found"):
        read_jsonl(tmp_path, QA)


@pytest.mark.parametrize("line, expected", [
    ('{"question": "q", "answer": ', "malformed JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('"just a string"', "expected a JSON object, got str"),
    ("null", "expected a JSON object, got NoneType"),
    ('{"question": "q", "answer": ' + "9" * 5000 + "}", "malformed JSON"),  # int digit limit
    ("[" * 100_000, "malformed JSON"),  # nested too deeply for the parser
    ('{"question": "q", "answer": "   "}', "field 'answer' must be a non-empty string"),
    ('{"question": "q", "answer": true}', "field 'answer' must be a non-empty string"),
    ('{"question": "q", "answer": ["a"]}', "field 'answer' must be a non-empty string"),
    ('{"question": "q", "answer": null}', "field 'answer' must be a non-empty string"),
])
def test_read_jsonl_bad_line(tmp_path, line, expected):
    path = _write(tmp_path / "bad.json", '{"question": "q", "answer": "a"}\n' + line + "\n")
    with pytest.raises(DataError) as err:
        read_jsonl(path, QA)
    msg = str(err.value)
    assert msg.startswith(f"{path}:2: ")
    assert expected in msg
    assert "\n" not in msg and len(msg) < 500


@pytest.mark.parametrize("value", ['"one"', "[]", '["a", 1]', "null", "5"])
def test_read_jsonl_list_field(tmp_path, value):
    path = _write(tmp_path / "p.json", '{"question": "q", "answer": "a", "perturbed_answer": %s}\n' % value)
    with pytest.raises(DataError, match=r"p\.json:1: field 'perturbed_answer' must be a non-empty list of strings"):
        read_jsonl(path, QA + ("perturbed_answer",), ("perturbed_answer",))


def test_read_jsonl_numeric_task_id_becomes_string(tmp_path):
    path = _write(tmp_path / "t.json", '{"task_id": 3, "question": "q", "answer": "a"}\n')
    assert read_jsonl(path, QA + ("task_id",))[0]["task_id"] == "3"
    _write(path, '{"task_id": true, "question": "q", "answer": "a"}\n')
    with pytest.raises(DataError, match="'task_id'"):
        read_jsonl(path, QA + ("task_id",))


def test_read_lines(tmp_path):
    path = _write(tmp_path / "idk.jsonl", "  I don't know. \n\n\u2028\nNo idea.\r\n")
    assert read_lines(path) == ["I don't know.", "No idea."]
    _write(path, b"\xff\xfe")
    with pytest.raises(DataError, match="not UTF-8"):
        read_lines(path)


# --------------------------------------------------------------------------- property test
_FIELDS = ("question", "answer", "perturbed_answer", "task_id", "extra")
_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["", " ", "\u2028", "a\u2028b", "\n"]),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
_objects = st.dictionaries(
    st.one_of(st.sampled_from(_FIELDS), st.text(max_size=8)), _json_values, max_size=6,
)
_valid_rows = st.fixed_dictionaries(
    {"question": st.text(min_size=1, max_size=10).filter(str.strip),
     "answer": st.text(min_size=1, max_size=10).filter(str.strip)},
    optional={"perturbed_answer": st.lists(st.text(max_size=5), min_size=1, max_size=3),
              "extra": _json_values},
)
_line = st.one_of(
    st.binary(max_size=30),
    st.text(max_size=30).map(lambda s: s.encode("utf-8", "surrogatepass")),
    _objects.map(lambda o: json.dumps(o, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    _valid_rows.map(lambda o: json.dumps(o, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.sampled_from([b"", b"   ", b"[", b"{}", b"null", b'{"question": "q", "answer": "a"}']),
)
_contents = st.tuples(
    st.lists(_line, max_size=6),
    st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=6, max_size=6),
    st.booleans(),
).map(lambda t: (b"\xef\xbb\xbf" if t[2] else b"") + b"".join(line + sep for line, sep in zip(t[0], t[1])))


def _check(path: Path, required: tuple[str, ...], list_fields: tuple[str, ...]) -> None:
    try:
        rows = read_jsonl(path, required=required, list_fields=list_fields)
    except DataError as e:
        assert str(e).startswith(str(path)), str(e)
        return
    assert rows
    for row in rows:
        assert isinstance(row, dict)
        for field in required:
            value = row[field]
            if field in list_fields:
                assert isinstance(value, list) and value and all(isinstance(v, str) for v in value)
            else:
                assert isinstance(value, str) and value.strip()
    # No row is silently dropped: one row per non-blank line.
    text = path.read_bytes().decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    assert len(rows) == sum(1 for line in text.split("\n") if line.strip())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=_contents)
def test_read_jsonl_never_raises_anything_but_data_error(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.json"
        path.write_bytes(content)
        _check(path, ("question", "answer"), ())
        _check(path, ("question", "answer", "perturbed_answer"), ("perturbed_answer",))


def test_property_strategy_produces_valid_files_too():
    """Guard on the strategy itself: a file of valid rows is read back whole."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.json"
        rows = [{"question": "q\u2028", "answer": "a", "perturbed_answer": ["x"]}] * 3
        path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
        assert read_jsonl(path, QA + ("perturbed_answer",), ("perturbed_answer",)) == rows
        assert os.path.getsize(path) > 0
