"""Per-process CPU time and memory, and the host's busy CPU time, from /proc (Linux).

CPU is utime + stime of one process (field 14 + 15 of ``/proc/PID/stat``),
converted from clock ticks to microseconds. Resident memory is ``VmRSS`` and
the lifetime peak ``VmHWM`` from ``/proc/PID/status``, in KiB. Run-queue wait
is the time the process's main thread (a node's event loop) was runnable but
waiting for a CPU (field 2 of ``/proc/PID/schedstat``, nanoseconds). Every
reader returns None for a process that has gone, never raises for that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICK_US = 1_000_000 // os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    """One reading of a process: CPU microseconds so far, RSS and peak RSS in KiB,
    and the main thread's run-queue wait in microseconds so far (None where the
    kernel keeps no schedstat)."""

    cpu_us: int
    rss_kb: int
    hwm_kb: int
    wait_us: int | None = None


def get_cpu_us(pid: int) -> int | None:
    """Return utime + stime of ``pid`` in microseconds, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text.rsplit(") ", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) * _TICK_US


def get_memory_kb(pid: int) -> tuple[int, int] | None:
    """Return (VmRSS, VmHWM) of ``pid`` in KiB, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    values = {"VmRSS:": 0, "VmHWM:": 0}
    for line in lines:
        parts = line.split()
        if parts and parts[0] in values:
            values[parts[0]] = int(parts[1])
    return values["VmRSS:"], values["VmHWM:"]


def get_runqueue_wait_us(pid: int) -> int | None:
    """Return the microseconds the main thread of ``pid`` has spent runnable but
    waiting for a CPU since it started, or None if the process is gone or the
    kernel keeps no ``/proc/PID/schedstat``."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            fields = f.read().split()
    except OSError:
        return None
    if len(fields) < 2 or not fields[1].isdigit():
        return None
    return int(fields[1]) // 1000


def get_sample(pid: int) -> ProcSample | None:
    """Return CPU, memory and run-queue wait of ``pid`` in one reading, or None if it is gone."""
    cpu = get_cpu_us(pid)
    mem = get_memory_kb(pid)
    if cpu is None or mem is None:
        return None
    return ProcSample(cpu, mem[0], mem[1], get_runqueue_wait_us(pid))


def get_self_cpu_us() -> int:
    """Return this process's own utime + stime (all threads) in microseconds."""
    times = os.times()
    return int((times.user + times.system) * 1_000_000)


def get_host_cpu_ticks() -> tuple[int, int] | None:
    """Return (busy, total) clock ticks of all the host's CPUs since boot, or None.

    From the ``cpu`` line of ``/proc/stat``: total is user + nice + system +
    idle + iowait + irq + softirq + steal (guest time is already inside
    user); busy is total minus idle and iowait.
    """
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]
    total = sum(ticks)
    return total - ticks[3] - ticks[4], total
