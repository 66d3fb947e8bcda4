"""
The benchmark still runs: C{python -m bench --smoke} against the real server,
and short runs against the minimal relays.

The benchmark is code too, and nothing else exercises it between the rare
occasions someone measures. The smoke run is a few clients for about a
second per workload, the chat server only (no ngircd needed). It asserts on
work done, never on speed: a loaded CI machine must not fail it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SMOKE_TIMEOUT = 50
"""Seconds for the whole smoke run; conftest's per-test limit is 60."""


def run_smoke(*extra: str) -> dict[str, dict[str, object]]:
    """Run the smoke benchmark; its JSON results by workload."""
    return run_bench("--smoke", *extra)


def run_bench(*arguments: str) -> dict[str, dict[str, Any]]:
    """Run C{python -m bench} with C{arguments}; its JSON results by workload."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    completed = subprocess.run(
        [sys.executable, "-m", "bench", *arguments],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    results = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    return {result["workload"]: result for result in results}


@pytest.mark.parametrize("loop", ["auto", "asyncio"])
def test_smoke(loop: str) -> None:
    """
    Every workload ran and did its work: messages were delivered, the idle
    connections stayed open, storm sessions completed. C{asyncio} is the
    fallback when uvloop is not installed; C{auto} is what people run.
    """
    by_workload = run_smoke("--loop", loop)
    assert set(by_workload) == {"direct", "fanout", "idle", "storm"}, by_workload
    for result in by_workload.values():
        assert "error" not in result, result
        assert result["server"] == "chat"
        assert result["server_tracebacks"] == 0, result
        if loop == "asyncio":
            assert result["loop"] == "asyncio"
    for workload in ("direct", "fanout"):
        result = by_workload[workload]
        assert result["deliveries"] > 0, result
        assert result["deliveries_total"] == result["expected_total"], result
        assert result["lat_samples"] > 0, result
    idle = by_workload["idle"]
    assert idle["still_open"] == idle["clients"], idle
    assert by_workload["storm"]["sessions"] > 0, by_workload["storm"]


QUICK = ("--servers", "chat", "--duration", "1", "--warmup", "0.3", "--repeat", "1")
"""One short run against chat, like C{--smoke} but for a single workload."""


def test_storm_with_idle_users() -> None:
    """C{--idle-users}: the idle users stay connected while storm sessions complete."""
    storm = run_bench(*QUICK, "--workloads", "storm", "--concurrency", "4", "--idle-users", "20")[
        "storm"
    ]
    assert "error" not in storm, storm
    assert storm["server_tracebacks"] == 0, storm
    assert storm["idle_users"] == 20, storm
    assert storm["idle_still_open"] == 20, storm
    assert storm["sessions"] > 0, storm
    assert storm["lost_connections"] == 0, storm


def test_own_pace() -> None:
    """C{--pace own}: every client on its own timer; deliveries all arrive, latency measured."""
    direct = run_bench(
        *QUICK, "--workloads", "direct", "--clients", "4", "--rate", "200", "--pace", "own"
    )["direct"]
    assert "error" not in direct, direct
    assert direct["server_tracebacks"] == 0, direct
    assert direct["pace"] == "own", direct
    assert direct["deliveries"] > 0, direct
    assert direct["deliveries_total"] == direct["expected_total"], direct
    assert direct["lat_samples"] > 0, direct


@pytest.mark.parametrize("server", ["uvrelay", "crelay"])
def test_minimal_relay(server: str) -> None:
    """
    The minimal relays speak what the generator expects: every promised
    delivery arrives (MESG, BCST), and storm sessions end with the server
    closing after QUIT. A reference that dropped lines would flatter itself.
    """
    by_workload = run_bench(
        *("--servers", server, "--duration", "0.5", "--warmup", "0.2", "--repeat", "1"),
        *("--workloads", "direct,fanout,storm", "--clients", "4", "--concurrency", "4"),
    )
    assert set(by_workload) == {"direct", "fanout", "storm"}, by_workload
    for result in by_workload.values():
        assert "error" not in result, result
        assert result["server"] == server, result
        assert result["server_exit"] == 0, result
        assert result["errors"] == {}, result
        assert result["lost_connections"] == 0, result
    for workload in ("direct", "fanout"):
        result = by_workload[workload]
        assert result["deliveries"] > 0, result
        assert result["deliveries_total"] == result["expected_total"], result
    storm = by_workload["storm"]
    assert storm["sessions"] > 0 and storm["failed_sessions"] == 0, storm


@pytest.mark.parametrize("path", [[], ["--line-by-line"]])
def test_inprocess_smoke(path: list[str]) -> None:
    """The in-process benchmark runs, and checks it relayed what it timed."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", "--turns", "2", *path],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert [line.split(":")[0] for line in completed.stdout.splitlines()] == ["mesg", "bcst"]
