"""``unlearnlm data fetch``: TOFU's hub configurations, for users who can reach a hub.

Downloads every configuration of ``locuslab/TOFU`` (``holdout01/05/10`` included, which the
bundled copy lacks and the membership-inference metrics need) with ``datasets``, checks each
one's row count, and writes it as JSON Lines to ``<cache>/data/tofu/<config>.json``: the same
layout and format as the bundled copy. Forget and holdout rows get ``task_id`` "1" (the hub's
forget sets are the standard task-1 splits; the bundled ``forgetXX`` files partition more
authors into further tasks, see ``docs/method.md`` section 2). Never called by tests against
the network: they replace ``datasets.load_dataset`` with a local fake.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from unlearnlm.errors import DataError

TOFU_REPO = "locuslab/TOFU"
# configuration -> rows, as published (Maini et al. 2024)
TOFU_CONFIGS = {
    "full": 4000, "forget01": 40, "forget05": 200, "forget10": 400,
    "retain90": 3600, "retain95": 3800, "retain99": 3960,
    "holdout01": 40, "holdout05": 200, "holdout10": 400,
    "forget01_perturbed": 40, "forget05_perturbed": 200, "forget10_perturbed": 400,
    "retain_perturbed": 400, "real_authors_perturbed": 100, "world_facts_perturbed": 117,
}
TASK_ONE = ("forget", "holdout")


def fetched_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``fetch_tofu`` writes (``<unlearnlm cache>/data``; a data directory of its own)."""
    from unlearnlm.models.offline import cache_root

    return cache_root(cache_dir) / "data"


def _load_config(config: str) -> list[dict]:
    import datasets

    try:
        rows = datasets.load_dataset(TOFU_REPO, config, split="train")
    except Exception as e:  # offline mode, no network, missing repo: one line, whichever it is
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"data fetch: cannot download {TOFU_REPO} config {config!r} from the hub ({reason}); "
                        "without a hub, the bundled copy is used (unlearnlm data)") from None
    return [dict(r) for r in rows]


def fetch_tofu(cache_dir: str | os.PathLike | None = None, configs=None, progress: bool = True) -> dict[str, int]:
    """Download ``configs`` (default: all of ``TOFU_CONFIGS``) into ``fetched_dir(cache_dir)/tofu``;
    return rows per config.
    A configuration already written with the right row count is not downloaded again."""
    from unlearnlm.data.loading import read_jsonl
    from unlearnlm.io import write_text

    out = fetched_dir(cache_dir) / "tofu"
    counts = {}
    for config in configs or TOFU_CONFIGS:
        path, want = out / f"{config}.json", TOFU_CONFIGS[config]
        if path.is_file() and len(read_jsonl(path)) == want:
            counts[config] = want
            continue
        rows = _load_config(config)
        if len(rows) != want:
            raise DataError(f"data fetch: {TOFU_REPO} config {config!r} has {len(rows)} rows, expected {want}")
        if config.startswith(TASK_ONE):
            rows = [r | {"task_id": "1"} for r in rows]
        write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        counts[config] = want
        if progress:
            print(f"{config:24s} {want:5d} rows -> {path}")
    return counts
