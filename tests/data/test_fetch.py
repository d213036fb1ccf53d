"""``unlearnlm data fetch`` against a local fake of the hub client (never the network)."""
from __future__ import annotations

import json

import datasets
import pytest

from unlearnlm.cli import main
from unlearnlm.data import fetch
from unlearnlm.data.loading import read_jsonl
from unlearnlm.errors import DataError


class FakeHub:
    """Stands in for ``datasets.load_dataset``: rows per configuration, calls recorded."""

    def __init__(self, counts):
        self.counts, self.calls = counts, []

    def __call__(self, repo, name, split):
        self.calls.append((repo, name, split))
        return [{"question": f"{name} q{i}?", "answer": f"a{i}"} for i in range(self.counts[name])]


@pytest.fixture
def small_configs(monkeypatch):
    counts = {"forget01": 3, "holdout01": 3, "retain99": 5}
    monkeypatch.setattr(fetch, "TOFU_CONFIGS", counts)
    return counts


def test_fetch_writes_every_config_in_the_bundled_layout(tmp_path, monkeypatch, small_configs, capsys):
    hub = FakeHub(small_configs)
    monkeypatch.setattr(datasets, "load_dataset", hub)
    assert main(["data", "fetch", "--cache-dir", str(tmp_path)]) == 0
    assert hub.calls == [("locuslab/TOFU", n, "train") for n in small_configs]
    out = tmp_path / "data" / "tofu"
    holdout = read_jsonl(out / "holdout01.json", ("question", "answer", "task_id"))
    assert [r["task_id"] for r in holdout] == ["1"] * 3  # forget / holdout rows are task 1
    assert "task_id" not in read_jsonl(out / "retain99.json")[0] and len(read_jsonl(out / "retain99.json")) == 5
    assert "fetched 3 TOFU configurations" in capsys.readouterr().out
    # a second fetch finds every file complete and downloads nothing
    hub.calls.clear()
    assert fetch.fetch_tofu(tmp_path) == small_configs and hub.calls == []
    # and `unlearnlm data` lists the holdout sets it found
    assert main(["data", "--cache-dir", str(tmp_path)]) == 0
    assert "hub holdout sets: holdout01" in capsys.readouterr().out


def test_fetch_rejects_a_wrong_row_count_and_writes_nothing(tmp_path, monkeypatch, small_configs):
    monkeypatch.setattr(datasets, "load_dataset", FakeHub(small_configs | {"holdout01": 2}))
    with pytest.raises(DataError, match=r"config 'holdout01' has 2 rows, expected 3"):
        fetch.fetch_tofu(tmp_path, progress=False)
    assert not (tmp_path / "data" / "tofu" / "holdout01.json").exists()


def test_fetch_without_a_hub_is_one_line_and_exit_2(tmp_path, monkeypatch, small_configs, capsys):
    def offline(repo, name, split):
        raise ConnectionError(f"Couldn't reach '{repo}' on the Hub (OfflineModeIsEnabled)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert main(["data", "fetch", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot download locuslab/TOFU config 'forget01'" in err and "OfflineModeIsEnabled" in err
