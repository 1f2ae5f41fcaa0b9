"""Issue 20's Dask targets, measured (not part of the test suite).

Run:  python benchmarks/bench_dask.py            (about 5 minutes; --quick for a smaller main grid)

1. A simulation grid that takes >= 60 s in this process on one core, against the same grid on a
   LocalCluster of two one-thread workers that simulate starts and stops itself (client="local",
   dask_min_seconds=1e-9: the first task group timed here, the cluster started in a thread while this
   process simulates the next ones; wall time including the start, the workers' imports and the shutdown).
   Target: >= 1.7x. The two tables must be identical.
2. The crossover: grids of about 2.5, 5, 10 and 20 s in-process, each run both ways, and the main grid; the
   crossover is the in-process time at which the cluster starts to win (linear interpolation of the wall-time
   difference), set against simulate's DASK_MIN_SECONDS["local"].
3. What simulate does by itself with client="local" for a small grid (stays in-process, with its note).

Wall times (time.perf_counter); the machine is shared, so each number is one run, not a best of.

4. CPU accounting, robust to the other engineers' load (--cpu-only runs just this: about a minute on an idle
   machine): the in-process CPU of a ~8 s grid; the LocalCluster simulate starts (its start and stop wall time, the
   CPU each worker spends starting, the idle CPU per second of the workers and of this process, which
   hosts the scheduler and the nannies); the same grid on it (the workers' CPU, this process's CPU, and
   from the task stream the tasks, the gaps between them and how far apart the two workers finish); and
   from these the speedup predicted for the main grid on two idle cores.
"""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import pandas as pd  # noqa: E402

from pfps_meta.analysis.simulate import BLOCK, DASK_MIN_SECONDS, Design, simulate  # noqa: E402

DESIGN = Design.from_range(14, 15, 60)
GRID = dict(tau2=(0.0, 0.1, 0.3), methods=("DL", "REML"), ci_methods=("wald", "hksj"), engine="numpy",
            progress=False, seed=2018)


def timed(replicates, client=None):
    """(wall s, result); with a client, simulate decides as a user's call does except that any estimate sends
    the rest to Dask (dask_min_seconds=1e-9: the first task group is timed here, the cluster starts while
    this process simulates the next ones)."""
    start = time.perf_counter()
    res = simulate(DESIGN, replicates=replicates, client=client, dask_min_seconds=1e-9 if client else None, **GRID)
    return time.perf_counter() - start, res


def cpu_on_given_client(replicates):
    """(wall s, CPU s of the two workers, CPU s of this process) for the grid on a LocalCluster that is
    already running (a user's Client: no start or stop in the time), so the CPU the Dask path spends can be
    set against the in-process CPU."""
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(2)
        client.run(lambda: __import__("pfps_meta.analysis.simulate"))           # imports outside the time
        before = sum(client.run(time.process_time).values())
        start, cpu = time.perf_counter(), time.process_time()
        simulate(DESIGN, replicates=replicates, client=client, dask_min_seconds=0, **GRID)
        wall, here = time.perf_counter() - start, time.process_time() - cpu
        return wall, sum(client.run(time.process_time).values()) - before, here


def _cpu_self():
    return time.process_time()


def _stream_summary(data):
    """(tasks, seconds of gaps between a worker's tasks, seconds between the two workers' last task ends)."""
    by_worker = {}
    for task in data:
        for part in task["startstops"]:
            if part["action"] == "compute":
                by_worker.setdefault(task["worker"], []).append((part["start"], part["stop"]))
    gaps, ends = 0.0, []
    for spans in by_worker.values():
        spans.sort()
        gaps += sum(b[0] - a[1] for a, b in zip(spans, spans[1:]))
        ends.append(spans[-1][1])
    return sum(len(v) for v in by_worker.values()), gaps, (max(ends) - min(ends)) if len(ends) > 1 else 0.0


def _on_cluster(client, replicates):
    """(workers' CPU s, this process's CPU s, task stream summary, result) of the grid on ``client``."""
    from dask.distributed import get_task_stream

    before, mine = client.run(time.process_time), _cpu_self()
    with get_task_stream(client) as stream:
        res = simulate(DESIGN, replicates=replicates, client=client, dask_min_seconds=0, **GRID)
    workers = sum(client.run(time.process_time).values()) - sum(before.values())
    return workers, _cpu_self() - mine, _stream_summary(stream.data), res


def cpu_accounting(main_seconds, repeats=3):
    """Section 4: where the two-worker time goes, in CPU seconds (see the module docstring); the grid runs
    ``repeats`` times each way, alternating, and the medians are compared."""
    import statistics

    from pfps_meta.analysis import simulate as sim

    start = _cpu_self()
    simulate(DESIGN, replicates=8 * BLOCK, **GRID)
    replicates = replicates_for(8.0, (_cpu_self() - start) / (8 * BLOCK))
    wall = time.perf_counter()
    own = sim._LocalStart()                              # the cluster simulate starts for client="local"
    client = own.started()
    start_wall = time.perf_counter() - wall
    worker_start = max(client.run(time.process_time).values())    # CPU up to ready, imports included
    before, mine, wall = client.run(time.process_time), _cpu_self(), time.perf_counter()
    time.sleep(5.0)
    idle_workers = sum(client.run(time.process_time).values()) - sum(before.values())
    idle_here, idle_s = _cpu_self() - mine, time.perf_counter() - wall
    here, there = [], []
    for _ in range(repeats):
        start = _cpu_self()
        reference = simulate(DESIGN, replicates=replicates, **GRID)
        here.append(_cpu_self() - start)
        there.append(_on_cluster(client, replicates))
        pd.testing.assert_frame_equal(reference.table, there[-1][3].table, check_exact=True)
    wall = time.perf_counter()
    own.close()
    stop_wall = time.perf_counter() - wall
    in_process = statistics.median(here)
    workers, client_cpu = (statistics.median(run[i] for run in there) for i in (0, 1))
    tasks, gaps, tail = there[-1][2]
    print(f"CPU accounting, a grid of {replicates:,} replicates, {repeats} runs each way (medians):")
    print(f"  LocalCluster start {start_wall:.1f} s wall (each worker {worker_start:.2f} s CPU to ready, imports "
          f"included), stop {stop_wall:.1f} s wall")
    print(f"  idle: workers {100 * idle_workers / idle_s / 2:.1f}% of a core each, this process (scheduler, "
          f"nannies) {100 * idle_here / idle_s:.1f}%")
    print(f"  in-process {in_process:.2f} s CPU (runs {', '.join(f'{x:.2f}' for x in here)}); on the cluster: "
          f"workers {workers:.2f} s ({workers / in_process:.3f}x; runs {', '.join(f'{r[0]:.2f}' for r in there)}), "
          f"this process {client_cpu:.2f} s; {tasks} tasks, {gaps:.2f} s of gaps between tasks, the two workers "
          f"finish {tail:.2f} s apart; tables identical")
    steady = 2 * in_process / (workers + client_cpu)
    overlap = worker_start                    # this process simulates while the workers start
    predicted = 1.5 * worker_start + (main_seconds - overlap) / steady + stop_wall
    print(f"  steady-state speedup {steady:.2f}x of 2; predicted for a {main_seconds:.0f} s grid on two idle "
          f"cores: {main_seconds / predicted:.2f}x (start ~{1.5 * worker_start:.1f} s while this process "
          f"simulates {overlap:.1f} s of the grid, stop {stop_wall:.1f} s as measured here)")


def replicates_for(seconds, per_replicate):
    return max(BLOCK, int(round(seconds / per_replicate / BLOCK)) * BLOCK)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a 20 s main grid instead of 75 s")
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU accounting (section 4)")
    args = parser.parse_args()
    calibration, _ = timed(8 * BLOCK)
    calibration, _ = timed(8 * BLOCK)             # the second run: imports and caches warm
    per_replicate = calibration / (8 * BLOCK)
    print(f"calibration: {per_replicate * 1e3:.3f} ms per replicate (3 cells x 4 method/CI pairs, k = 14, numpy)")

    print(f"load average at the start (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())} on "
          f"{os.cpu_count()} CPUs (a shared machine: two workers can only be faster with two idle cores)")
    # 75 s by the calibration, so that the grid takes at least the 60 s the target names even when the
    # calibration runs slow (a 65 s calibration once gave a 57.5 s grid)
    replicates = replicates_for(20.0 if args.quick else 75.0, per_replicate)
    cpu_accounting(20.0 if args.quick else 75.0)
    if args.cpu_only:
        return
    cpu_start = time.process_time()
    here, res_here = timed(replicates)
    cpu_here = time.process_time() - cpu_start
    there, res_there = timed(replicates, "local")
    pd.testing.assert_frame_equal(res_here.table, res_there.table, check_exact=True)
    assert res_there.setup["scheduler"] == "dask"
    print(f"main grid: {replicates:,} replicates x 3 cells: in-process {here:.1f} s, two local workers "
          f"{there:.1f} s (start and stop included): speedup {here / there:.2f}x (target 1.7x); tables identical"
          + ("" if args.quick or here >= 60 else f"; NOTE: {here:.1f} s in-process is under the target's 60 s"))
    wall, workers, client_cpu = cpu_on_given_client(replicates)
    print(f"same grid on a running two-worker cluster (a user's Client): wall {wall:.1f} s, speedup "
          f"{here / wall:.2f}x; CPU: in-process {cpu_here:.1f} s, workers {workers:.1f} s + client {client_cpu:.1f} s; "
          f"cores the workers got: {workers / wall:.2f} of 2")

    rows = []
    for target in (2.5, 5.0, 10.0, 20.0):
        n = replicates_for(target, per_replicate)
        a, _ = timed(n)
        b, _ = timed(n, "local")
        rows.append({"replicates": n, "in_process_s": a, "local_cluster_s": b, "speedup": a / b})
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    rows.append({"replicates": replicates, "in_process_s": here, "local_cluster_s": there, "speedup": here / there})
    crossover = None
    for prev, row in zip(rows, rows[1:]):
        d0, d1 = prev["in_process_s"] - prev["local_cluster_s"], row["in_process_s"] - row["local_cluster_s"]
        if d0 < 0 <= d1:
            crossover = prev["in_process_s"] + (row["in_process_s"] - prev["in_process_s"]) * (-d0) / (d1 - d0)
    if rows[0]["in_process_s"] >= rows[0]["local_cluster_s"]:
        crossover = rows[0]["in_process_s"]
        print(f"crossover: the cluster already wins at {crossover:.1f} s in-process")
    elif crossover is None:
        print("crossover: beyond the largest grid measured")
    else:
        print(f"crossover: about {crossover:.1f} s of in-process work; simulate's DASK_MIN_SECONDS['local'] = "
              f"{DASK_MIN_SECONDS['local']:g} s")

    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    small = replicates_for(3.0, per_replicate)
    start = time.perf_counter()
    res = simulate(DESIGN, replicates=small, client="local", **GRID)
    print(f"client='local' on a ~3 s grid, left to decide: {time.perf_counter() - start:.1f} s, ran "
          f"{res.setup['scheduler']}; note: {res.notes[-1] if res.notes else '(none)'}")


if __name__ == "__main__":
    main()
