"""Rebuild the data copy shipped in the package from ../shared/data (or a given folder).

    .venv/bin/python scripts/bundle_data.py [SOURCE]

Writes src/unlearnlm/data/bundled/*.gz and SHA256SUMS (see src/unlearnlm/data/bundle.py);
NOTICE.md (licences and attribution) is kept by hand. Deterministic: rerunning on the same
source changes no byte, so `git status` shows whether the source changed.
"""
import sys
from pathlib import Path

from unlearnlm.data.bundle import BUNDLED_DIR, build_bundle

source = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")
sums = build_bundle(source, BUNDLED_DIR)
size = sum(p.stat().st_size for p in BUNDLED_DIR.rglob("*.gz"))
print(f"{len(sums)} files from {source} -> {BUNDLED_DIR} ({size / 1e6:.1f} MB compressed)")
