"""One minute of the soak script against a real server, as CI's share of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_one_minute_soak_loses_nothing() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--clients", "50", "--seconds", "60"],
        cwd=REPO_ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert result["problem_count"] == 0
    assert result["deliveries_checked"] > 1000
    assert result["operations"]["rejoin"] > 0
