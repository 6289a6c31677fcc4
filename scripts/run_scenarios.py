#!/usr/bin/env python3
"""Run Molecule scenarios (`molecule test -s NAME`), several at a time, and report.

With --pytest the pytest suite (tests/) is two more jobs in the same pool (the tests of the
demo server, tests/test_demo*.py, which deploy the whole site, and the others), and with
--lint so are yamllint and ansible-lint: the machine's cores stay busy while one job waits on a
container, and `make test` ends sooner than with lint and pytest first and the scenarios after.

Each scenario's whole output goes to .cache/molecule/NAME.log. When a scenario has
secrets.yml files (its stand-in for the vault, under molecule/NAME/ or generated into
.cache/molecule/NAME/), that log and the log of the playbooks its tests ran
(.cache/molecule/NAME.runs.log) are searched for those values; a match fails the scenario.

  run_scenarios.py                 every scenario, one job more than the cores at a time
  run_scenarios.py --jobs 1 app    one scenario
  run_scenarios.py --lint --pytest lint, pytest and every scenario (what `make test` runs)
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
# Unbuffered: the job writes to a pipe, and its log should grow while it runs.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
       "PYTHONUNBUFFERED": "1"}
# Longest first (as measured on a 2-core machine), so the slowest jobs do not start last.
ORDER = ["demo", "multihost", "hardening", "app", "tls", "backups", "ufw", "pytest", "docker", "lint", "default"]
PYTEST = "pytest"
DEMO = "demo"
# The tests of the demo server share one demo (tests/conftest.py): they are one job.
DEMO_TESTS = "tests/test_demo*.py"
LINT = "lint"
# Each job waits at times (containers starting, health gates, the drain of a release): with
# one job per core the cores were idle 14 % of a `make test`, with one job more about 3 %,
# and the run ended 9 % sooner (README, Timings).
DEFAULT_JOBS = len(os.sched_getaffinity(0)) + 1


def scenarios() -> list:
    found = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))
    return sorted(found, key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER))


def secret_files(name: str) -> list:
    files = sorted((REPO / "molecule" / name).rglob("secrets.yml"))
    generated = LOGS / name
    if generated.is_dir():
        files += sorted(generated.rglob("secrets.yml"))
    return files


def run_logged(cmd: list, log: Path, start: float) -> int:
    """Run CMD with its output in LOG; each line starts with the minutes:seconds since START,
    so a slow step shows in the log of any run."""
    with open(log, "w") as out, subprocess.Popen(
            cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace") as proc:
        for line in proc.stdout:
            elapsed = int(time.monotonic() - start)
            out.write(f"{elapsed // 60:3d}:{elapsed % 60:02d} {line}")
    return proc.returncode


def run_pytest(name: str) -> tuple:
    """The demo server's tests (DEMO), or the rest of tests/ (PYTEST)."""
    start = time.monotonic()
    selection = (sorted(str(p.relative_to(REPO)) for p in REPO.glob(DEMO_TESTS)) if name == DEMO
                 else ["tests", f"--ignore-glob={DEMO_TESTS}"])
    rc = run_logged([sys.executable, "-m", "pytest", "--durations=15", *selection], LOGS / f"{name}.log", start)
    note = f"{name}: no tests collected" if rc == 5 else ""
    return name, 0 if rc == 5 else rc, time.monotonic() - start, note


def run_lint() -> tuple:
    """yamllint, then ansible-lint with the production profile (as `make lint`)."""
    start = time.monotonic()
    rc = run_logged(["sh", "-c", "yamllint --strict . && ansible-lint --profile production"],
                    LOGS / f"{LINT}.log", start)
    return LINT, rc, time.monotonic() - start, ""


def run_one(name: str) -> tuple:
    if name in (PYTEST, DEMO):
        return run_pytest(name)
    if name == LINT:
        return run_lint()
    log = LOGS / f"{name}.log"
    runs_log = LOGS / f"{name}.runs.log"
    runs_log.unlink(missing_ok=True)
    start = time.monotonic()
    rc = run_logged(["molecule", "test", "-s", name], log, start)
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
WHY = re.compile(r"^\s*(?:\d+:\d\d )?\s*(?:[│|]\s*)?(?:FAILED |ERROR |E {3}|_{5,} test|fatal: |failed: |\[ERROR\]: |TASK \[)")


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
    out = ["    what failed:"] + [f"    ! {line}" for line in why[-why_lines:]]
    if tail_lines:
        out += ["    end of the log:"] + [f"    | {line}" for line in lines[-tail_lines:]]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="scenarios (default: all)")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                        help=f"jobs at a time (default: one more than the cores, here {DEFAULT_JOBS})")
    parser.add_argument("--pytest", action="store_true",
                        help="run the pytest suite (tests/) as two more jobs in the pool: the demo "
                             "server's tests, and the others")
    parser.add_argument("--lint", action="store_true",
                        help="run yamllint and ansible-lint as one more job in the pool")
    args = parser.parse_args(argv)
    names = args.names or scenarios()
    unknown = [n for n in names if not (REPO / "molecule" / n / "molecule.yml").exists()]
    if unknown:
        print(f"no such scenario: {', '.join(unknown)}", file=sys.stderr)
        return 2
    extra = [job for job, wanted in ((DEMO, args.pytest), (PYTEST, args.pytest), (LINT, args.lint)) if wanted]
    if extra:
        names = sorted([*extra, *names], key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER))
    LOGS.mkdir(parents=True, exist_ok=True)
    print(f"{len(names)} jobs, {args.jobs} at a time: {' '.join(names)}", flush=True)
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
    # Again at the end, where a reader of only the last lines of the output finds it.
    for name in failed:
        print(f"=== {name} FAILED; what failed, from .cache/molecule/{name}.log:", flush=True)
        print(failure_report(LOGS / f"{name}.log", why_lines=40, tail_lines=0), flush=True)
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
