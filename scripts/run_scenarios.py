#!/usr/bin/env python3
"""Run Molecule scenarios (`molecule test -s NAME`), several at a time, and report.

Each scenario's whole output goes to .cache/molecule/NAME.log. When a scenario has
secrets.yml files (its stand-in for the vault, under molecule/NAME/ or generated into
.cache/molecule/NAME/), that log and the log of the playbooks its tests ran
(.cache/molecule/NAME.runs.log) are searched for those values; a match fails the scenario.

  run_scenarios.py                 every scenario, two at a time
  run_scenarios.py --jobs 1 app    one scenario
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / ".cache" / "molecule"
# molecule and ansible-playbook come from the virtualenv of this interpreter first, so a
# plain `.venv/bin/python scripts/run_scenarios.py` finds them without an activated venv
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
# Longest first, so the slowest scenarios do not start last.
ORDER = ["site", "tls", "ufw", "app", "backups", "hardening", "docker", "default"]


def scenarios() -> list:
    found = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))
    return sorted(found, key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER))


def secret_files(name: str) -> list:
    files = sorted((REPO / "molecule" / name).rglob("secrets.yml"))
    generated = LOGS / name
    if generated.is_dir():
        files += sorted(generated.rglob("secrets.yml"))
    return files


def run_one(name: str) -> tuple:
    log = LOGS / f"{name}.log"
    runs_log = LOGS / f"{name}.runs.log"
    runs_log.unlink(missing_ok=True)
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.run(["molecule", "test", "-s", name], cwd=REPO, stdout=out, env=ENV,
                              stderr=subprocess.STDOUT, check=False)
    rc = proc.returncode
    note = ""
    files = secret_files(name)
    if rc == 0 and files:
        cmd = [sys.executable, str(REPO / "scripts/check_log_secrets.py")]
        for path in files:
            cmd += ["--secrets", str(path)]
        cmd += [str(log)] + ([str(runs_log)] if runs_log.exists() else [])
        check = subprocess.run(cmd, capture_output=True, text=True, check=False)
        note = (check.stdout + check.stderr).strip()
        rc = check.returncode
    return name, rc, time.monotonic() - start, note


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Lines that say what failed: pytest's failures and summary, Ansible's failed tasks.
WHY = re.compile(r"^\s*(?:[│|]\s*)?(?:FAILED |ERROR |E {3}|_{5,} test|fatal: |failed: |\[ERROR\]: |TASK \[)")


def failure_report(log: Path, why_lines: int = 120, tail_lines: int = 40) -> str:
    """What failed (pytest and Ansible failure lines from the whole log), then the log's tail."""
    lines = [ANSI.sub("", line) for line in log.read_text(errors="replace").splitlines()]
    why, task = [], ""
    for line in lines:
        if not WHY.match(line) or "FAILED - RETRYING" in line:
            continue
        if "TASK [" in line:
            task = line.strip()  # kept only when a failure follows it
            continue
        if task and ("fatal: " in line or "failed: " in line or "[ERROR]: " in line):
            why.append(task)
            task = ""
        why.append(line)
    out = ["    what failed:"] + [f"    ! {line}" for line in why[-why_lines:]] + ["    end of the log:"]
    return "\n".join(out + [f"    | {line}" for line in lines[-tail_lines:]])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="scenarios (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="scenarios at a time (default 2)")
    args = parser.parse_args(argv)
    names = args.names or scenarios()
    unknown = [n for n in names if not (REPO / "molecule" / n / "molecule.yml").exists()]
    if unknown:
        print(f"no such scenario: {', '.join(unknown)}", file=sys.stderr)
        return 2
    LOGS.mkdir(parents=True, exist_ok=True)
    print(f"molecule: {len(names)} scenarios, {args.jobs} at a time: {' '.join(names)}", flush=True)
    results = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, name) for name in names]
        for fut in as_completed(futures):
            name, rc, seconds, note = fut.result()
            results.append((name, rc, seconds))
            status = "passed" if rc == 0 else "FAILED"
            print(f"=== {name} {status} in {seconds:.0f}s (log: .cache/molecule/{name}.log)", flush=True)
            if note:
                print(f"    {note}", flush=True)
            if rc != 0:
                print(failure_report(LOGS / f"{name}.log"), flush=True)
    failed = [name for name, rc, _ in results if rc != 0]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
