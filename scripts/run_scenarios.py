#!/usr/bin/env python3
"""Run Molecule scenarios (`molecule test -s NAME`), several at a time, and report.

With --pytest the pytest suite (tests/) is two more jobs in the same pool (the tests of the
demo server, tests/test_demo*.py, which deploy the whole site, and the others), and with
--lint so are yamllint and ansible-lint: the machine's cores stay busy while one job waits on a
container, and `make test` ends sooner than with lint and pytest first and the scenarios after.

Each job's whole output goes to .cache/molecule/NAME.log (a scenario's tests add the output of
the playbooks they ran, NAME.runs.log). When every job is done, each is judged:
  - its exit code; exit code 5 of pytest (no tests collected) fails it;
  - a job that runs tests must show at least one passed test in pytest's JUnit report
    (.cache/molecule/NAME.junit.xml); its passed / failed / skipped counts go into the
    closing table (conftest.py fails every skip it does not allow-list, so the skipped
    column holds only allowed ones);
  - every log of every job is searched for every secret of the run: the scenarios'
    secrets.yml files (stand-ins for the vault) and what each job registered in
    .cache/molecule/NAME.secrets/ (generated keys, vault values and passwords; see
    scripts/check_log_secrets.py), as they are and URL- or base64-encoded. A match fails the
    job whose log shows it, naming the secret, never its value.

  run_scenarios.py                 every scenario, one job more than the cores at a time
  run_scenarios.py --jobs 1 app    one scenario
  run_scenarios.py --lint --pytest lint, pytest and every scenario (what `make test` runs)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import check_log_secrets  # noqa: E402

LOGS = REPO / ".cache" / "molecule"
# molecule and ansible-playbook come from the virtualenv of this interpreter first, so a
# plain `.venv/bin/python scripts/run_scenarios.py` finds them without an activated venv
# Unbuffered: the job writes to a pipe, and its log should grow while it runs.
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
       "PYTHONUNBUFFERED": "1"}
# Longest first (as measured on a 2-core machine), so the slowest jobs do not start last.
ORDER = ["demo", "multihost", "hardening", "app", "examples", "tls", "backups", "ufw", "pytest", "docker", "lint", "default"]
PYTEST = "pytest"
DEMO = "demo"
# The tests of the demo server share one demo (tests/conftest.py): they are one job.
DEMO_TESTS = "tests/test_demo*.py"
LINT = "lint"
# Each job waits at times (containers starting, health gates, the drain of a release): with
# one job per core the cores were idle 14 % of a `make test`, with one job more about 3 %,
# and the run ended 9 % sooner (docs/timings.md).
DEFAULT_JOBS = len(os.sched_getaffinity(0)) + 1


def order_key(name: str) -> int:
    return ORDER.index(name) if name in ORDER else len(ORDER)


def scenarios() -> list:
    return sorted(sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml")), key=order_key)


def secret_files(name: str) -> list:
    """A scenario's stand-ins for the vault: its secrets.yml files, kept under molecule/NAME/ or
    generated into .cache/molecule/NAME/."""
    files = sorted((REPO / "molecule" / name).rglob("secrets.yml"))
    generated = LOGS / name
    if generated.is_dir():
        files += sorted(generated.rglob("secrets.yml"))
    return files


def register_dir(name: str) -> Path:
    """Where the job's tests and scripts leave the secrets they make (check_log_secrets.record)."""
    return LOGS / f"{name}.secrets"


@dataclass
class Job:
    """One job's outcome; `logs` are every file its output went to."""
    name: str
    kind: str  # "molecule", "pytest" or "lint"
    rc: int
    seconds: float
    logs: list = field(default_factory=list)
    junit: Path | None = None  # pytest's JUnit report of the job's tests
    counts: dict | None = None  # {"passed": N, "failed": N, "skipped": N}; None: pytest reported nothing
    reasons: list = field(default_factory=list)  # why it failed; empty: it passed

    @property
    def passed(self) -> bool:
        return not self.reasons


def run_logged(cmd: list, log: Path, start: float, env: dict) -> int:
    """Run CMD with its output in LOG; each line starts with the minutes:seconds since START,
    so a slow step shows in the log of any run."""
    with open(log, "w") as out, subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace") as proc:
        for line in proc.stdout:
            elapsed = int(time.monotonic() - start)
            out.write(f"{elapsed // 60:3d}:{elapsed % 60:02d} {line}")
    return proc.returncode


def junit_file(name: str) -> Path:
    """pytest's report of the job's tests (its verifier's, for a scenario)."""
    return LOGS / f"{name}.junit.xml"


def job_env(name: str) -> dict:
    """The job's environment: its secrets register, and pytest writing its JUnit report
    (whose counts are read from there, not from output that Molecule wraps at 80 columns)."""
    directory = register_dir(name)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)
    junit_file(name).unlink(missing_ok=True)
    addopts = f"{ENV.get('PYTEST_ADDOPTS', '')} --junitxml={junit_file(name)}".strip()
    return {**ENV, check_log_secrets.REGISTER_VARIABLE: str(directory), "PYTEST_ADDOPTS": addopts}


def run_pytest(name: str, selection: list | None = None) -> Job:
    """The demo server's tests (DEMO), the rest of tests/ (PYTEST), or SELECTION."""
    start = time.monotonic()
    if selection is None:
        selection = (sorted(str(p.relative_to(REPO)) for p in REPO.glob(DEMO_TESTS)) if name == DEMO
                     else ["tests", f"--ignore-glob={DEMO_TESTS}"])
    log = LOGS / f"{name}.log"
    rc = run_logged([sys.executable, "-m", "pytest", "--durations=15", *selection], log, start, job_env(name))
    return Job(name, "pytest", rc, time.monotonic() - start, [log], junit_file(name))


def run_lint() -> Job:
    """yamllint, then ansible-lint with the production profile (as `make lint`)."""
    start = time.monotonic()
    log = LOGS / f"{LINT}.log"
    rc = run_logged(["sh", "-c", "yamllint --strict . && ansible-lint --profile production"], log, start,
                    job_env(LINT))
    return Job(LINT, "lint", rc, time.monotonic() - start, [log])


def run_one(name: str) -> Job:
    if name in (PYTEST, DEMO):
        return run_pytest(name)
    if name == LINT:
        return run_lint()
    log = LOGS / f"{name}.log"
    runs_log = LOGS / f"{name}.runs.log"
    runs_log.unlink(missing_ok=True)
    start = time.monotonic()
    rc = run_logged(["molecule", "test", "-s", name], log, start, job_env(name))
    return Job(name, "molecule", rc, time.monotonic() - start, [log, runs_log], junit_file(name))


def pytest_counts(junit: Path | None) -> dict | None:
    """{"passed", "failed", "skipped"} from pytest's JUnit report (errors count as failed);
    None when there is no report: pytest did not run (a verifier that found no tests)."""
    if junit is None or not Path(junit).exists():
        return None
    root = ElementTree.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for suite in suites:
        tests, failed, errors, skipped = (int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped"))
        counts["failed"] += failed + errors
        counts["skipped"] += skipped
        counts["passed"] += tests - failed - errors - skipped
    return counts


def verdict(job: Job, leaks: list) -> list:
    """Why JOB failed (empty: it passed). A job that ran tests must show, in its JUnit report,
    at least one passed test and none failed: a run that collected nothing, or whose verifier
    found no tests, proves nothing. Allowed skips are counted, never failed (conftest.py turns
    every other skip into a failure)."""
    reasons = []
    if job.rc == 5 and job.kind == "pytest":
        reasons.append("pytest collected no tests (exit code 5)")
    elif job.rc != 0:
        reasons.append(f"exit code {job.rc}")
    if job.kind in ("pytest", "molecule"):
        if job.counts is None:
            reasons.append("pytest reported no tests: no test ran")
        elif job.counts["passed"] == 0:
            reasons.append("no test passed")
        elif job.counts["failed"]:
            reasons.append(f"{job.counts['failed']} tests failed")
    reasons += [f"secret in the output: {leak}" for leak in leaks]
    return reasons


def all_secrets(names: list) -> list:
    """Every secret the run's jobs used: the scenarios' stand-ins for the vault, and what each
    job registered (generated keys, vault values, passwords)."""
    secrets = []
    for path in sorted({p for scenario in scenarios() for p in secret_files(scenario)}):
        secrets += check_log_secrets.read_secret_file(path)
    for name in names:
        secrets += check_log_secrets.read_register(register_dir(name))
    return secrets


def judge(jobs: list, secrets: list) -> list:
    """Count each job's tests, search every job's logs for every secret of the run, and give
    each job its verdict. Returns the jobs."""
    for job in jobs:
        logs = [log for log in job.logs if Path(log).exists()]
        job.counts = pytest_counts(job.junit) if job.kind != "lint" else None
        job.reasons = verdict(job, check_log_secrets.find_leaks(secrets, logs) if secrets else [])
    return jobs


def table(jobs: list) -> str:
    """One row a job (result, time, passed / failed / skipped tests), then the totals."""
    rows = [f"{'job':<10} {'result':<7} {'time':>6} {'passed':>7} {'failed':>7} {'skipped':>8}"]
    total = {"passed": 0, "failed": 0, "skipped": 0}
    for job in sorted(jobs, key=lambda j: order_key(j.name)):
        counts = job.counts or {}
        cells = [str(counts.get(k, "-")) if job.counts is not None else "-" for k in ("passed", "failed", "skipped")]
        rows.append(f"{job.name:<10} {'passed' if job.passed else 'FAILED':<7} {job.seconds:>5.0f}s "
                    f"{cells[0]:>7} {cells[1]:>7} {cells[2]:>8}")
        for key in total:
            total[key] += counts.get(key, 0)
    failed = sum(not job.passed for job in jobs)
    rows.append(f"jobs: {len(jobs) - failed} passed, {failed} failed")
    rows.append(f"tests: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")
    return "\n".join(rows)


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
        names = sorted([*extra, *names], key=order_key)
    LOGS.mkdir(parents=True, exist_ok=True)
    print(f"{len(names)} jobs, {args.jobs} at a time: {' '.join(names)}", flush=True)
    jobs = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, name) for name in names]
        for fut in as_completed(futures):
            job = fut.result()
            jobs.append(job)
            status = "exited 0" if job.rc == 0 else f"FAILED (exit code {job.rc})"
            print(f"=== {job.name} {status} in {job.seconds:.0f}s (log: .cache/molecule/{job.name}.log)", flush=True)
            if job.rc != 0:
                print(failure_report(job.logs[0]), flush=True)
    # Every log is searched for every secret the run made, once all jobs are done (a job's
    # log may show a secret another job made).
    judge(jobs, all_secrets(names))
    for name in names:
        shutil.rmtree(register_dir(name), ignore_errors=True)
    failed = [job for job in jobs if not job.passed]
    # Again at the end, where a reader of only the last lines of the output finds it.
    for job in failed:
        print(f"=== {job.name} FAILED: {'; '.join(job.reasons)}", flush=True)
        if job.rc != 0:
            print(failure_report(job.logs[0], why_lines=40, tail_lines=0), flush=True)
    print(table(jobs), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
