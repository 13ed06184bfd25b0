"""Time Harrell's C: ours (O(n log n)) beside scikit-survival's (quadratic).

Run: ``python benchmarks/bench_cindex.py [--sizes 1000 10000 50000 1000000] [--repeats 5]``.
Prints one row per number of patients with the median seconds of each implementation,
taken in turns in one process on the same data, and their ratio (ours / sksurv; below 1
means ours is faster). scikit-survival is skipped above ``--sksurv-max`` patients
(minutes per run). Every pair of results is checked equal. The data: risks from a
float32 network-like score, follow-up in whole days (heavy ties in time), 60% events.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import sksurv
from sksurv.metrics import concordance_index_censored as sksurv_concordance_index

from sksurvfusion.metrics import concordance_index_censored


def _cohort(n, rng):
    risk = rng.normal(size=n).astype(np.float32)
    event_time = rng.exponential(365.0 * np.exp(-risk))
    censor_time = rng.uniform(0.0, 3 * 365.0, size=n)
    event = event_time <= censor_time
    days = np.ceil(np.minimum(event_time, censor_time))
    return event, days, risk


def _seconds(function, args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 50_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sksurv-max", type=int, default=50_000)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__}, scikit-survival {sksurv.__version__}"
    )
    header = f"{'n':>9} {'sksurv (s)':>11} {'ours (s)':>9} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        data = _cohort(n, rng)
        # small sizes are repeated more so that the median is over a measurable time
        repeats = args.repeats * max(1, 10_000 // n)
        ours, theirs = [], []
        concordance_index_censored(*data)  # warm up
        for _ in range(repeats):
            seconds, result = _seconds(concordance_index_censored, data)
            ours.append(seconds)
            if n <= args.sksurv_max:
                seconds, expected = _seconds(sksurv_concordance_index, data)
                theirs.append(seconds)
                if result != expected:
                    raise AssertionError(f"n={n}: ours {result} != sksurv {expected}")
        mine = statistics.median(ours)
        if theirs:
            reference = statistics.median(theirs)
            print(f"{n:>9} {reference:>11.4f} {mine:>9.4f} {mine / reference:>7.4f}")
        else:
            print(f"{n:>9} {'skipped':>11} {mine:>9.4f} {'':>7}")


if __name__ == "__main__":
    main()
