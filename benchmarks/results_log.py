"""The results log every long benchmark keeps: one JSON line per finished unit of work in
``<checkpoint-dir>/results.jsonl``, so a stopped run loses nothing and ``--resume`` goes on."""

from __future__ import annotations

import json
import os
from pathlib import Path


def open_log(checkpoint_dir: Path | None, resume: bool) -> tuple[Path | None, list[dict]]:
    """The log's path (None without a checkpoint folder) and the results already in it.
    An existing log is refused without ``resume``, so no run is appended to by mistake."""
    if resume and checkpoint_dir is None:
        raise SystemExit("--resume needs --checkpoint-dir")
    if checkpoint_dir is None:
        return None, []
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    log = checkpoint_dir / "results.jsonl"
    if log.exists() and not resume:
        raise SystemExit(f"{log} exists: pass --resume to continue it, or another "
                         "--checkpoint-dir")
    if not log.exists():
        return log, []
    with open(log) as f:
        return log, [json.loads(line) for line in f if line.strip()]


def append(log: Path | None, result: dict) -> None:
    """Add one finished result to the log, on disk before the next unit starts."""
    if log is None:
        return
    with open(log, "a") as f:
        f.write(json.dumps(result) + "\n")
        f.flush()
        os.fsync(f.fileno())
