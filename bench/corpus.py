"""`make bench-corpus`: the example pipeline on a folder of real documents, against a plain
script that calls the same four stage functions one document after another.

The corpus is built from documents this machine already has, none written here: the manuals,
READMEs and changelogs under /usr/share/doc (HTML, Markdown, text, PDF), and the descriptions
of the installed Python packages (their METADATA, Markdown), each at most --max-bytes. Both
sides start from nothing: `pipeline run CORPUS` as a user types it (embedded Redis started and
stopped, stage modules and the model loaded), and the script, which starts and stops an
embedded Redis too, so that both figures hold it. Printed: documents/s of each, the ratio,
and where the time went per stage.

    python bench/corpus.py [--docs 200] [--max-bytes 40000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framework.cli.documents import find_documents
from framework.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
SOURCES = (Path("/usr/share/doc"),)
SUFFIXES = {".html", ".htm", ".md", ".markdown", ".txt", ".pdf"}
STAGES = ("extract", "analyze", "summarize", "embed")


def build_corpus(folder: Path, count: int, max_bytes: int) -> int:
    """Copy up to `count` real documents into `folder`; returns how many."""
    found: list[tuple[str, Path]] = []
    for source in SOURCES:
        for path in sorted(source.rglob("*")) if source.is_dir() else []:
            if _document(path, max_bytes):
                found.append((str(path.relative_to(source)).replace("/", "__"), path))
    site = Path(sys.prefix) / "lib"
    for metadata in sorted(site.glob("python3*/site-packages/*.dist-info/METADATA")):
        if 0 < metadata.stat().st_size <= max_bytes:
            found.append((metadata.parent.name.split("-")[0] + ".md", metadata))
    # An even spread over what was found, so that no one package's docs make the corpus.
    step = max(len(found) // count, 1)
    chosen = found[::step][:count]
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in chosen:
        shutil.copyfile(path, folder / name)
    return len(chosen)


def _document(path: Path, max_bytes: int) -> bool:
    """A regular file of a type the example reads, not empty, not over `max_bytes`."""
    if path.suffix.lower() not in SUFFIXES or path.is_symlink() or not path.is_file():
        return False
    return 0 < path.stat().st_size <= max_bytes


def pipeline_run(corpus: Path, workdir: Path) -> tuple[float, dict[str, float], int, int]:
    """`pipeline run` on the corpus; seconds, busy seconds per stage, done, failed."""
    (workdir / "pipeline.yaml").write_text((ROOT / "pipeline.yaml").read_text())
    (workdir / "stages").symlink_to(ROOT / "stages", target_is_directory=True)
    output = workdir / "results.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LLM_BASE_URL")}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "framework", "run", str(corpus), "--output", str(output)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in output.read_text().splitlines()]
    busy = _stage_seconds(records)
    done = sum(record["state"] == "done" for record in records)
    return seconds, busy, done, len(records) - done


def _stage_seconds(records: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds in each stage's function, from the per-job timings results.jsonl carries (for a
    batch stage, each job's share of its batch's call)."""
    busy: dict[str, float] = defaultdict(float)
    for record in records:
        for stage, timing in (record.get("stages") or {}).items():
            busy[stage] += timing["busy_ms"] / 1000
    return dict(busy)


def script(corpus: Path, workdir: Path) -> tuple[float, dict[str, float], int, int]:
    """The same four functions, one document after another, in this process."""
    started = time.perf_counter()
    embedded = EmbeddedRedis(workdir)  # held as `pipeline run` holds it
    embedded.start()
    try:
        sys.path.insert(0, str(ROOT))
        from framework import Fail
        from stages.analyze import analyze
        from stages.embed import embed
        from stages.extract import extract
        from stages.summarize import summarize

        os.environ["PIPELINE_FILES_ROOT"] = str(corpus.resolve())
        busy: dict[str, float] = defaultdict(float)
        done = failed = 0
        for document in find_documents([corpus]):
            payload = document.job(32 * 2**20)
            try:
                for stage, call in (
                    ("extract", extract),
                    ("analyze", analyze),
                    ("summarize", lambda doc: asyncio.run(summarize(doc))),
                    ("embed", lambda doc: embed([doc])[0]),
                ):
                    began = time.perf_counter()
                    payload = call(payload)
                    busy[stage] += time.perf_counter() - began
                done += 1
            except Fail:
                failed += 1
    finally:
        embedded.stop()
    return time.perf_counter() - started, dict(busy), done, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200, help="documents in the corpus")
    parser.add_argument("--max-bytes", type=int, default=40_000, help="largest document")
    parser.add_argument("--keep", type=Path, help="build the corpus here and keep it")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        corpus = options.keep or Path(tmp) / "corpus"
        count = build_corpus(corpus, options.docs, options.max_bytes)
        size = sum(path.stat().st_size for path in corpus.iterdir())
        print(f"corpus: {count} documents, {size / 1e6:.1f} MB, from /usr/share/doc and "
              "installed packages' descriptions")  # fmt: skip
        (Path(tmp) / "run").mkdir()
        (Path(tmp) / "script").mkdir()
        run_seconds, run_busy, run_done, run_failed = pipeline_run(corpus, Path(tmp) / "run")
        script_seconds, script_busy, script_done, script_failed = script(
            corpus, Path(tmp) / "script"
        )
    import torch

    print(f"torch intra-op threads: {torch.get_num_threads()}, CPUs: {os.cpu_count()}")
    print(f"pipeline run: {run_seconds:6.1f} s, {count / run_seconds:5.2f} docs/s "
          f"({run_done} done, {run_failed} failed)")  # fmt: skip
    print(f"script:       {script_seconds:6.1f} s, {count / script_seconds:5.2f} docs/s "
          f"({script_done} done, {script_failed} failed)")  # fmt: skip
    print(f"ratio (pipeline run / script, docs/s): {script_seconds / run_seconds:.2f}")
    print("seconds in each stage's function, script (pipeline run)")
    for stage in STAGES:
        shown = f"{run_busy[stage]:.1f}" if stage in run_busy else "-"
        print(f"  {stage:10} {script_busy.get(stage, 0.0):7.1f} ({shown})")


if __name__ == "__main__":
    main()
