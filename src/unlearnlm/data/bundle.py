"""The data copy shipped inside the package: gzip JSON Lines, a checksum manifest, licences.

Every data file is stored as ``NAME.gz`` (the original bytes, gzip level 9, no timestamp), so
the decompressed content is byte-identical to the source tree it was built from
(``scripts/bundle_data.py``, from ``../shared/data``). ``SHA256SUMS`` holds the sha256 of each
file's decompressed content under its plain name; ``NOTICE.md`` the licences and attribution.
Checksums everywhere (run manifests, judge keys) are of the content, so a run on the bundled
copy and a run on the plain files record the same digests and share every cache.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

BUNDLED_DIR = Path(__file__).with_name("bundled")
CHECKSUMS = "SHA256SUMS"
NOTICE = "NOTICE.md"
DATA_SUFFIXES = (".json", ".jsonl")


def find_data_file(path: Path) -> Path | None:
    """The file that holds ``path``'s content: ``path`` itself, else ``path.gz``, else None."""
    if path.is_file():
        return path
    packed = path.with_name(path.name + ".gz")
    return packed if packed.is_file() else None


def read_bytes(path: str | os.PathLike) -> bytes:
    """The content of a data file, decompressed when it is a ``.gz``."""
    path = Path(path)
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


def content_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(read_bytes(path)).hexdigest()


def data_files(root: str | os.PathLike) -> dict[str, Path]:
    """Plain relative name (``tofu/forget01.json``) -> the file holding it, for every data file."""
    root = Path(root)
    found = {}
    for p in sorted(root.rglob("*")):
        name = p.name[:-3] if p.name.endswith(".gz") else p.name
        if p.is_file() and Path(name).suffix in DATA_SUFFIXES:
            found[str(p.relative_to(root).with_name(name))] = p
    return found


def content_checksums(root: str | os.PathLike) -> dict[str, str]:
    """sha256 of every data file's content, by plain relative name (see the module docstring)."""
    return {name: content_sha256(p) for name, p in data_files(root).items()}


def read_checksums(root: str | os.PathLike) -> dict[str, str]:
    """The ``SHA256SUMS`` manifest of a bundled copy (``DIGEST  NAME`` lines)."""
    lines = (Path(root) / CHECKSUMS).read_text(encoding="utf-8").splitlines()
    return {name: digest for digest, name in (line.split(maxsplit=1) for line in lines if line.strip())}


def verify(root: str | os.PathLike = BUNDLED_DIR) -> list[str]:
    """Problems of a bundled copy against its manifest (empty when every file matches)."""
    expected, actual = read_checksums(root), content_checksums(root)
    problems = [f"{n}: missing" for n in expected if n not in actual]
    problems += [f"{n}: not in {CHECKSUMS}" for n in actual if n not in expected]
    problems += [f"{n}: sha256 differs from {CHECKSUMS}" for n in expected
                 if n in actual and actual[n] != expected[n]]
    return problems


def build_bundle(source: str | os.PathLike, dest: str | os.PathLike = BUNDLED_DIR) -> dict[str, str]:
    """Write ``source``'s data files into ``dest`` as ``.gz`` plus ``SHA256SUMS``; return the sums.
    Deterministic: the same source gives the same bytes (mtime 0, no file name in the header)."""
    from unlearnlm.io import atomic_path, write_text

    source, dest = Path(source), Path(dest)
    sums = {}
    for name, path in data_files(source).items():
        content = read_bytes(path)
        with atomic_path(dest / f"{name}.gz") as tmp:
            with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                       compresslevel=9, mtime=0) as gz:
                gz.write(content)
        sums[name] = hashlib.sha256(content).hexdigest()
    write_text(dest / CHECKSUMS, "".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
    return sums
