#!/usr/bin/env python3
"""How long site.yml takes on a bare server, and on a server where nothing needs changing.

Drives the instances of the `site` Molecule scenario: a Debian 13 server container with
Docker inside, a Git server and an ACME server (Pebble). For each run it starts from scratch
(`molecule destroy` then `molecule create`, which also runs the scenario's prepare), times a
cold `molecule converge` (the whole site.yml, ending with the post-deploy validation), then
times a second converge, which has nothing to do, and counts what it changed. It prints the
medians of the runs and the ratio of the two times.

  bench_converge.py             3 runs (about 47 minutes on 2 idle cores)
  bench_converge.py --runs 1    one run
  bench_converge.py --keep      leave the last run's instances up (`molecule destroy -s site`)

The time of a run is the playbook's own elapsed time as Ansible's profile_tasks callback
reports it (without Molecule's start-up); the wall time of the whole `molecule converge`
is shown beside it. Needs what `make test` needs: the virtualenv, a Docker engine and the
test-bed images (`make images`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCENARIO = "site"
SERVER = "site-debian13"
LOG_DIR = REPO / ".cache" / "bench"
ELAPSED = re.compile(r"\((\d+):(\d\d):(\d\d(?:\.\d+)?)\)\s+(\d+):(\d\d):(\d\d(?:\.\d+)?)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def molecule() -> str:
    beside = REPO / ".venv" / "bin" / "molecule"
    exe = str(beside) if beside.exists() else shutil.which("molecule")
    if exe is None:
        sys.exit("bench_converge: molecule not found; run `make venv` first")
    return exe


def run(step: str, log: Path) -> tuple[float, str]:
    """`molecule STEP -s site`, its output kept in LOG; (wall seconds, output)."""
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", NO_COLOR="1")
    env["PATH"] = f"{Path(molecule()).parent}{os.pathsep}{env.get('PATH', '')}"
    start = time.monotonic()
    proc = subprocess.run([molecule(), step, "-s", SCENARIO], cwd=REPO, env=env, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - start
    output = ANSI.sub("", proc.stdout)
    log.write_text(output)
    if proc.returncode != 0:
        sys.exit(f"bench_converge: `molecule {step} -s {SCENARIO}` failed (exit {proc.returncode}); "
                 f"see {log.relative_to(REPO)}")
    return wall, output


def playbook_seconds(output: str) -> float | None:
    """The playbook's elapsed time from profile_tasks' last timestamp line."""
    found = ELAPSED.findall(output)
    if not found:
        return None
    hours, minutes, seconds = found[-1][3:]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def changed(output: str) -> int:
    """The changed count of the server in the last PLAY RECAP."""
    recap = output[output.rfind("PLAY RECAP"):]
    match = re.search(rf"{re.escape(SERVER)}\s*:\s.*?changed=(\d+)", recap, re.S)
    if not match:
        sys.exit("bench_converge: no PLAY RECAP line for the server in the converge output")
    return int(match.group(1))


def fmt(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="cold converges, each from scratch (default 3)")
    parser.add_argument("--keep", action="store_true", help="leave the instances of the last run up")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    cold, noop, cold_wall, noop_wall, noop_changed = [], [], [], [], []
    try:
        for n in range(1, args.runs + 1):
            print(f"[bench] run {n}/{args.runs}: fresh instances (destroy, create, prepare)", flush=True)
            run("destroy", LOG_DIR / f"destroy-{n}.log")
            run("create", LOG_DIR / f"create-{n}.log")
            wall, out = run("converge", LOG_DIR / f"converge-cold-{n}.log")
            cold.append(playbook_seconds(out) or wall)
            cold_wall.append(wall)
            print(f"[bench]   cold converge:   {fmt(cold[-1])} (molecule converge: {fmt(wall)}, "
                  f"changed={changed(out)})", flush=True)
            wall, out = run("converge", LOG_DIR / f"converge-noop-{n}.log")
            noop.append(playbook_seconds(out) or wall)
            noop_wall.append(wall)
            noop_changed.append(changed(out))
            print(f"[bench]   no-op converge:  {fmt(noop[-1])} (molecule converge: {fmt(wall)}, "
                  f"changed={noop_changed[-1]})", flush=True)
    finally:
        if not args.keep:
            run("destroy", LOG_DIR / "destroy-last.log")
    cold_median, noop_median = statistics.median(cold), statistics.median(noop)
    print()
    print(f"site.yml on a local server ({SCENARIO} scenario, {args.runs} run{'s' if args.runs > 1 else ''}, "
          f"{os.cpu_count()} CPUs; logs in {LOG_DIR.relative_to(REPO)}/)")
    print(f"  cold converge (bare server)  median {fmt(cold_median)}   runs: {', '.join(fmt(s) for s in cold)}")
    print(f"  no-op re-run                 median {fmt(noop_median)}   runs: {', '.join(fmt(s) for s in noop)}")
    print(f"  changed in the no-op re-run  {', '.join(str(c) for c in noop_changed)}")
    print(f"  ratio no-op / cold           {noop_median / cold_median:.2f} "
          f"(the re-run takes {noop_median / cold_median:.0%} of the cold time)")
    return 0 if all(c == 0 for c in noop_changed) else 1


if __name__ == "__main__":
    sys.exit(main())
