#!/usr/bin/env python3
"""How long site.yml takes on a bare server, and on a server where nothing needs changing.

Drives the demo (scripts/demo.py): a Debian 13 server container with Docker inside, reached
over SSH, and an ACME server (Pebble). For each run it starts from scratch (`demo.py down`,
then `demo.py up`, which starts the server and Pebble, puts the app's repository and images
beside the server, runs the pre-flight check and then site.yml) and takes the time of that
cold site.yml, then times a second `ansible-playbook site.yml -i inventories/local`, which
has nothing to do, and counts what it changed. It prints the medians of the runs and the
ratio of the two times.

  bench_converge.py             3 runs (about 30 minutes on 2 idle cores)
  bench_converge.py --runs 1    one run
  bench_converge.py --keep      leave the last run's demo up (`make demo-down` removes it)

The time of a run is the playbook's own elapsed time as Ansible's profile_tasks callback
reports it (without the demo's set-up); the wall time of the whole command is shown beside
it. Needs what `make demo` needs: the virtualenv, a Docker engine and the test-bed images
(`make images`). A demo that already runs is removed first.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER = "demo"
BIN = Path(sys.executable).parent
LOG_DIR = REPO / ".cache" / "bench"
ELAPSED = re.compile(r"\((\d+):(\d\d):(\d\d(?:\.\d+)?)\)\s+(\d+):(\d\d):(\d\d(?:\.\d+)?)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DEMO = [sys.executable, str(REPO / "scripts/demo.py")]
SITE = [str(BIN / "ansible-playbook"), "site.yml", "-i", "inventories/local",
        "--vault-password-file", ".demo/local.vault-pass"]


def run(cmd: list, log: Path) -> tuple[float, str]:
    """CMD in the repository, its output kept in LOG; (wall seconds, output)."""
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PY_COLORS="0", NO_COLOR="1",
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - start
    output = ANSI.sub("", proc.stdout)
    log.write_text(output)
    if proc.returncode != 0:
        sys.exit(f"bench_converge: `{' '.join(cmd[1:3])}` failed (exit {proc.returncode}); "
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
        sys.exit("bench_converge: no PLAY RECAP line for the server in the site.yml output")
    return int(match.group(1))


def fmt(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="cold converges, each from scratch (default 3)")
    parser.add_argument("--keep", action="store_true", help="leave the demo of the last run up")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    cold, noop, cold_wall, noop_wall, noop_changed = [], [], [], [], []
    try:
        for n in range(1, args.runs + 1):
            print(f"[bench] run {n}/{args.runs}: a fresh demo (demo.py down, then up)", flush=True)
            run([*DEMO, "down"], LOG_DIR / f"down-{n}.log")
            wall, out = run([*DEMO, "up"], LOG_DIR / f"converge-cold-{n}.log")
            cold.append(playbook_seconds(out) or wall)
            cold_wall.append(wall)
            print(f"[bench]   cold site.yml:   {fmt(cold[-1])} (demo.py up: {fmt(wall)}, "
                  f"changed={changed(out)})", flush=True)
            wall, out = run(SITE, LOG_DIR / f"converge-noop-{n}.log")
            noop.append(playbook_seconds(out) or wall)
            noop_wall.append(wall)
            noop_changed.append(changed(out))
            print(f"[bench]   no-op site.yml:  {fmt(noop[-1])} (ansible-playbook: {fmt(wall)}, "
                  f"changed={noop_changed[-1]})", flush=True)
    finally:
        if not args.keep:
            run([*DEMO, "down"], LOG_DIR / "down-last.log")
    cold_median, noop_median = statistics.median(cold), statistics.median(noop)
    print()
    print(f"site.yml on a local server (the demo, {args.runs} run{'s' if args.runs > 1 else ''}, "
          f"{os.cpu_count()} CPUs; logs in {LOG_DIR.relative_to(REPO)}/)")
    print(f"  cold converge (bare server)  median {fmt(cold_median)}   runs: {', '.join(fmt(s) for s in cold)}")
    print(f"  no-op re-run                 median {fmt(noop_median)}   runs: {', '.join(fmt(s) for s in noop)}")
    print(f"  changed in the no-op re-run  {', '.join(str(c) for c in noop_changed)}")
    print(f"  ratio no-op / cold           {noop_median / cold_median:.2f} "
          f"(the re-run takes {noop_median / cold_median:.0%} of the cold time)")
    return 0 if all(c == 0 for c in noop_changed) else 1


if __name__ == "__main__":
    sys.exit(main())
