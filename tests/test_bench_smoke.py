"""`python -m bench --quick` on the cheap benchmarks: the runner and the modules work.

No figure is checked (speed is not a test); only that the tables come out.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fixtures.shared_data import REPO_ROOT


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.usefixtures("sites_dir")
def test_quick_extraction_benchmark_prints_the_machine_and_its_table() -> None:
    done = run_bench("--quick", "extraction")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "Machine:" in done.stdout and "cores" in done.stdout
    assert "bench/extraction.py" in done.stdout
    assert "extraction overhead over plain trafilatura.extract" in done.stdout
    assert "not counted under --quick" in done.stdout  # callgrind only in the full run


def test_unknown_benchmark_is_refused_with_the_available_ones() -> None:
    done = run_bench("no-such-bench")

    assert done.returncode == 2
    assert "unknown benchmark(s) no-such-bench" in done.stderr
    assert "extraction" in done.stderr
