"""Timing helpers shared by the benchmarks (not part of the package or the test suite)."""

import time

import numpy as np


def best_of(func, repeat, number):
    """(best, median) seconds per call of ``func`` over ``repeat`` rounds of ``number`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            func()
        times.append((time.perf_counter() - start) / number)
    return min(times), float(np.median(times))
