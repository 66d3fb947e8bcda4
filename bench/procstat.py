"""
Readings from C{/proc}: CPU time and memory of a process, busy time of the
machine, load average.

The benchmark compares servers by the CPU they burn per delivered message, so
it reads the kernel's own accounting (C{utime + stime}) rather than trusting
wall-clock throughput alone, which a busy load generator or another tenant on
the machine would distort.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds used so far by C{pid} (its threads included)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    """Resident set size of C{pid} in KiB (C{VmRSS})."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def own_cpu_seconds() -> float:
    """CPU seconds used by this process: the load generator's own cost."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_cpu_seconds() -> dict[str, float]:
    """
    Busy (non-idle, non-iowait) CPU seconds of the whole machine and of each
    core, from C{/proc/stat}: C{{"all": ..., "cpu0": ..., ...}}.

    Subtracting the server's and the generator's own time from the machine's
    tells how much CPU something else took during a run: a disturbed run.
    """
    busy: dict[str, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if not line.startswith("cpu"):
            break
        name, *values = line.split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in values[:8])
        busy["all" if name == "cpu" else name] = (
            user + nice + system + irq + softirq + steal
        ) / CLOCK_TICKS
    return busy


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages, as C{uptime} shows them."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


@dataclass(frozen=True)
class Snapshot:
    """CPU counters taken together at one instant, to subtract later."""

    wall: float
    server: float
    generator: float
    machine: dict[str, float]

    @classmethod
    def take(cls, server_pid: int, wall: float) -> Snapshot:
        return cls(wall, process_cpu_seconds(server_pid), own_cpu_seconds(), busy_cpu_seconds())

    def since(self, earlier: Snapshot) -> dict[str, float]:
        """CPU use between C{earlier} and this snapshot, as JSON-ready figures."""
        wall = self.wall - earlier.wall
        server = self.server - earlier.server
        generator = self.generator - earlier.generator
        machine = {k: self.machine[k] - earlier.machine.get(k, 0.0) for k in self.machine}
        other = machine["all"] - server - generator
        return {
            "wall_s": round(wall, 4),
            "server_cpu_s": round(server, 3),
            "server_cpu_util": round(server / wall, 3) if wall > 0 else 0.0,
            "gen_cpu_s": round(generator, 3),
            "gen_cpu_util": round(generator / wall, 3) if wall > 0 else 0.0,
            # Can be slightly positive without any other tenant: softirq time
            # spent on loopback traffic is charged to no process.
            "other_cpu_s": round(other, 2),
            "other_cpu_util": round(other / wall, 3) if wall > 0 else 0.0,
            "core_busy_util": {
                k: round(v / wall, 3) for k, v in machine.items() if k != "all" and wall > 0
            },
        }
