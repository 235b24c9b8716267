"""The cost of counting one request in Prometheus metrics: prometheus_client (what nbmill
serve uses) against a plain Python counter of the same metrics, per request, in one process.

    .venv/bin/python bench/metrics.py [--requests 200000]

Figures, not asserts.
"""

from __future__ import annotations

import argparse
import time

from nbmill.serving.metrics import BUCKETS_S, Metrics


class PlainCounters:
    """Counters and a histogram in dicts and lists: what nbmill used before prometheus_client."""

    def __init__(self) -> None:
        self.requests: dict[int, int] = {}
        self.errors = self.rows = 0
        self.buckets = [0] * (len(BUCKETS_S) + 1)
        self.latency_sum = 0.0

    def observe(self, status: int, seconds: float, rows: int) -> None:
        self.requests[status] = self.requests.get(status, 0) + 1
        self.errors += status >= 400
        self.rows += rows
        self.latency_sum += seconds
        for i, bound in enumerate(BUCKETS_S):
            if seconds <= bound:
                self.buckets[i] += 1
                break
        else:
            self.buckets[-1] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    print("| counting | µs per request |\n|---|---:|")
    for label, metrics in (("plain Python", PlainCounters()), ("prometheus_client", Metrics())):
        began = time.perf_counter()
        for _ in range(args.requests):
            metrics.observe(200, 0.0015, 1)
        print(f"| {label} | {(time.perf_counter() - began) / args.requests * 1e6:.2f} |")


if __name__ == "__main__":
    main()
