#!/usr/bin/env python3
"""How fast this machine is right now, in two figures the test suite's time follows.

The suite is CPU-bound and most of its time is Ansible tasks: Python work on the
controller and on the host containers, and many short-lived processes (`docker exec`,
the module's interpreter). The same suite has taken from about 35 to about 80 minutes on
machines of the same kind on different days, with the CPU busy all along, so a run's time
means little without the speed of the machine it ran on. This prints:

  python   milliseconds for a fixed piece of pure-Python work (one core), median of 5
  spawn    milliseconds to fork and exec a trivial process and wait for it, median of 5
           rounds of 100

Run it on an otherwise idle machine (`.ci/run` does, before and after `make test`); lower
is faster. It needs nothing but Python and /bin/true.

  machine_speed.py
  machine_speed.py --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time


def python_work() -> float:
    """A fixed mix of what Ansible does a lot of: dicts, strings, hashing, small objects."""
    start = time.perf_counter()
    table: dict = {}
    for i in range(200_000):
        key = f"task-{i % 5000}"
        table[key] = table.get(key, 0) + len(key)
    digest = b""
    for _ in range(2_000):
        digest = hashlib.sha256(digest + b"x" * 64).digest()
    items = sorted(((v, k) for k, v in table.items()), reverse=True)
    assert items and digest
    return (time.perf_counter() - start) * 1000


def spawn_work(count: int = 100) -> float:
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run(["/bin/true"], check=True)
    return (time.perf_counter() - start) * 1000 / count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    python_ms = statistics.median(python_work() for _ in range(5))
    spawn_ms = statistics.median(spawn_work() for _ in range(5))
    if args.json:
        print(json.dumps({"python_ms": round(python_ms, 1), "spawn_ms": round(spawn_ms, 2)}))
    else:
        print(f"machine speed: python {python_ms:.0f} ms, spawn {spawn_ms:.2f} ms (lower is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
