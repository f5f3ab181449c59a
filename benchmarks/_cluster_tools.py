"""``bench_cluster.py``'s servers and report: a deployment of one node or a Cluster, each
node's ``INFO`` counters, the measured phase's numbers and the table they print."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.redis_tools import RedisCluster, RedisServer

__all__ = ["SCRIPT_CALLS", "Measured", "deployment", "report", "snapshot"]

SCRIPT_CALLS = ("FCALL", "EVALSHA", "EVAL")


@contextmanager
def deployment(masters: int) -> Iterator[tuple[str, list[int]]]:
    """(storage URL, ports of the masters): one plain node, or a Cluster."""
    if masters == 1:
        with RedisServer() as server:
            yield server.url(0), [server.port]
        return
    with RedisCluster(masters=masters) as cluster:
        yield cluster.url, [node.port for node in cluster.nodes]


def snapshot(clients: list[Any]) -> list[dict[str, float]]:
    """Each node's counters from ``INFO``: CPU (all, kernel), socket reads, memory, the
    library's calls and seconds inside them, and its keys."""
    out = []
    for client in clients:
        cpu = client.info("cpu")
        memory = client.info("memory")
        stats = client.info("commandstats")
        reads = client.info("stats")["total_reads_processed"]
        scripts = [
            v for k, v in stats.items() if k.removeprefix("cmdstat_").upper() in SCRIPT_CALLS
        ]
        calls = sum(int(v["calls"]) for v in scripts)
        usec = sum(float(v["usec"]) for v in scripts)
        out.append(
            {
                "cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
                "sys": float(cpu["used_cpu_sys"]),
                "reads": float(reads),
                "memory": float(memory["used_memory"]),
                "calls": float(calls),
                "script": usec / 1e6,
                "records": float(client.dbsize()),
            }
        )
    return out


@dataclass
class Measured:
    """One deployment's measured phase, its nodes' counters and the clients' outcomes."""

    masters: int
    lookups: int
    cpu: list[float]  # per node, seconds, measured phase
    idle: list[float]  # per node, CPU seconds a second with no lookups (cron, bus)
    memory: list[float]  # per node, bytes held at the end (above an empty node)
    calls: float  # library calls per lookup
    script: float  # seconds inside the library's calls (INFO commandstats), all masters
    sys: float  # seconds of the CPU in the kernel (used_cpu_sys), all masters
    reads: float  # reads from client sockets (total_reads_processed), all masters
    keys: list[float]
    seconds: float
    outcomes: dict[str, int]

    @classmethod
    def between(
        cls,
        before: list[dict[str, float]],
        after: list[dict[str, float]],
        empty: list[float],
        idle: list[float],
        masters: int,
        lookups: int,
        seconds: float,
        outcomes: dict[str, int],
    ) -> Measured:
        """The measured phase from each node's :func:`snapshot` before and after it, its
        memory when empty and its idle CPU a second."""
        pairs = list(zip(after, before, strict=True))
        return cls(
            masters=masters,
            lookups=lookups,
            cpu=[a["cpu"] - b["cpu"] for a, b in pairs],
            idle=idle,
            memory=[a["memory"] - e for a, e in zip(after, empty, strict=True)],
            calls=sum(a["calls"] - b["calls"] for a, b in pairs) / lookups,
            script=sum(a["script"] - b["script"] for a, b in pairs),
            sys=sum(a["sys"] - b["sys"] for a, b in pairs),
            reads=sum(a["reads"] - b["reads"] for a, b in pairs),
            keys=[a["records"] for a in after],
            seconds=seconds,
            outcomes=outcomes,
        )

    @property
    def capacity(self) -> float:
        return self.lookups / max(self.cpu)

    @property
    def net_capacity(self) -> float:
        """The capacity with each node's idle CPU for the run's length taken off."""
        net = [c - i * self.seconds for c, i in zip(self.cpu, self.idle, strict=True)]
        return self.lookups / max(max(net), 1e-9)

    @property
    def cpu_per_lookup(self) -> float:
        return sum(self.cpu) / self.lookups


def report(results: list[Measured]) -> None:
    """Print the table of capacities against one node, then each run's details."""
    ones = [r.capacity for r in results if r.masters == 1]
    base = sum(ones) / len(ones) if ones else None  # one node, every run of it (interleaved)
    nets = [r.net_capacity for r in results if r.masters == 1]
    net_base = sum(nets) / len(nets) if nets else None
    print(
        f"{'deployment':<12}{'capacity/s':>12}{'x one node':>11}{'net':>7}{'Redis CPU us':>14}"
        f"{'script us':>11}{'calls':>7}{'busiest CPU':>13}{'busiest mem':>13}"
        "   CPU shares / memory shares"
    )
    for r in results:
        fair = 1 / r.masters
        cpu_share = [c / sum(r.cpu) for c in r.cpu]
        mem_share = [m / sum(r.memory) for m in r.memory]
        ratio = f"{r.capacity / base:.2f}x" if base else "-"
        net = f"{r.net_capacity / net_base:.2f}x" if net_base else "-"
        name = "one node" if r.masters == 1 else f"{r.masters} masters"
        print(
            f"{name:<12}{r.capacity:>12,.0f}{ratio:>11}{net:>7}{r.cpu_per_lookup * 1e6:>14.1f}"
            f"{r.script / r.lookups * 1e6:>11.1f}{r.calls:>7.2f}"
            f"{max(cpu_share) / fair:>12.2f}x{max(mem_share) / fair:>12.2f}x   "
            + " ".join(f"{s:.2f}" for s in cpu_share)
            + " / "
            + " ".join(f"{s:.2f}" for s in mem_share)
        )
    for r in results:
        print(
            f"   {r.masters} master(s): {r.lookups:,} lookups in {r.seconds:.1f} s "
            f"({r.lookups / r.seconds:,.0f}/s with these clients on this host); "
            f"keys per node {', '.join(f'{k:,.0f}' for k in r.keys)}; outcomes {r.outcomes}; "
            f"kernel {r.sys / sum(r.cpu):.0%} of the CPU; {r.reads / r.lookups:.2f} socket reads "
            f"per lookup; idle CPU {', '.join(f'{i * 1e3:.1f}' for i in r.idle)} ms/s "
            f"({sum(i * r.seconds for i in r.idle) / sum(r.cpu):.1%} of the measured CPU)"
        )
    print(
        "   capacity: measured lookups / CPU seconds of the busiest master (one core there);\n"
        "   x one node: against the mean of the one-node runs (--masters 1,3,6,1 brackets the\n"
        "   Clusters); net: the same ratio with each node's idle CPU (cron, Cluster bus) over\n"
        "   the run taken off; Redis CPU us: CPU of all masters per lookup; script us: the time\n"
        "   inside the library's calls (INFO commandstats; the rest is the servers' I/O);\n"
        "   calls: library calls (FCALL/EVALSHA) per lookup; busiest CPU / mem: the busiest\n"
        "   master's share as a multiple of its fair share (target <= 1.5x); targets: 3 masters\n"
        "   >= 2.5x one node, 6 masters >= 4.5x"
    )
