"""bench/scaleout.py's harness against a real server: the load is set up, measured and checked
exactly once, and the table lands between its markers without touching the rest of the file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.scaleout import BEGIN, END, REDIS, SETUPS, run_setup, table, write_doc


def test_one_process_run_delivers_everything_exactly_once(tmp_path: Path) -> None:
    args = argparse.Namespace(runs=1, pairs=4, window=4, seconds=1.0, warmup=0.3)
    local = next(s for s in SETUPS if s.key == "1-local")
    result = run_setup(local, tmp_path / "run", args)
    assert result.delivered > 0 and result.per_second > 0
    assert result.sent_total == result.delivered  # everything sent arrived ...
    assert result.missing == 0 and result.errors == 0, result.first_errors  # ... once, in order
    assert result.cpu_us_per_msg is not None and result.cpu_us_per_msg > 0

    section = table({"1-local": [result]}, {"2-redis": "not here"}, args)
    assert "| 1 process, in-process hub |" in section
    assert "not measured: not here" in section
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Performance\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
    write_doc(section, doc)
    text = doc.read_text()
    assert "old table" not in text and section in text
    assert text.startswith("# Performance\n\nbefore\n") and text.endswith("\nafter\n")
    bare = tmp_path / "bare.md"
    bare.write_text("# Performance\n")
    write_doc(section, bare)
    assert bare.read_text().count(BEGIN) == 1


@pytest.mark.slow
@pytest.mark.skipif(REDIS is None, reason="needs redis-server (scripts/install-system-deps.sh)")
def test_two_process_run_crosses_processes_exactly_once(tmp_path: Path) -> None:
    """Counselors on the first process, clients on the second, both on one Redis (the harness
    checks that both connected to it before measuring)."""
    args = argparse.Namespace(runs=1, pairs=4, window=4, seconds=1.0, warmup=0.3)
    two = next(s for s in SETUPS if s.key == "2-redis")
    result = run_setup(two, tmp_path / "run", args)
    assert result.delivered > 0
    assert result.clean and result.sent_total == result.delivered, result.first_errors
