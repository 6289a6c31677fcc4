"""scripts/run_scenarios.py's verdict: what turns `make test` red.

The jobs here are real: pytest runs on test files written for the test under the project's
root (so the root conftest.py's rules apply to them as to every test of the project), and
a job's log is searched for secrets as the run searches every job's log.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import run_scenarios as rs  # noqa: E402

SECRET = "s3cr3t-Zq8vT3pL0xW9yR2k"


@pytest.fixture
def workdir():
    """A directory under the project's root (pytest.ini's root, whose conftest.py applies)."""
    path = REPO / ".cache" / "run-scenarios-test" / uuid.uuid4().hex[:8]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pytest_job(workdir: Path, name: str, source: str | None) -> rs.Job:
    """A real pytest job over one test file (none when SOURCE is None), judged without secrets."""
    if source is not None:
        (workdir / "test_sample.py").write_text(source)
    job_name = f"selftest-{workdir.name}-{name}"
    job = rs.run_pytest(job_name, [str(workdir)])
    job.logs = [workdir / "job.log"]
    shutil.move(rs.LOGS / f"{job_name}.log", job.logs[0])
    if job.junit.exists():
        job.junit = shutil.move(job.junit, workdir / "junit.xml")
    shutil.rmtree(rs.register_dir(job_name), ignore_errors=True)
    return rs.judge([job], [])[0]


def test_a_passing_job_passes_with_its_counts(workdir):
    job = pytest_job(workdir, "ok", "def test_one():\n    assert 1\n\ndef test_two():\n    assert 2\n")
    assert job.passed, job.reasons
    assert job.counts == {"passed": 2, "failed": 0, "skipped": 0}
    assert "selftest" in rs.table([job]) and "tests: 2 passed, 0 failed, 0 skipped" in rs.table([job])


def test_a_failing_test_turns_the_job_red(workdir):
    job = pytest_job(workdir, "fail", "def test_one():\n    assert 1 == 2\n")
    assert not job.passed
    assert job.rc == 1 and "exit code 1" in job.reasons
    assert job.counts["failed"] == 1


def test_a_pytest_run_that_collects_nothing_is_red(workdir):
    job = pytest_job(workdir, "empty", None)
    assert job.rc == 5
    assert not job.passed
    assert "pytest collected no tests (exit code 5)" in job.reasons


def test_a_skip_is_a_failure_unless_allow_listed(workdir):
    job = pytest_job(workdir, "skip",
                     "import pytest\n\ndef test_runs():\n    assert True\n\n"
                     "def test_skips():\n    pytest.skip('no engine here')\n")
    assert not job.passed
    assert job.counts == {"passed": 1, "failed": 1, "skipped": 0}
    text = job.logs[0].read_text()
    assert "test_skips was skipped (no engine here)" in text and "ALLOWED_SKIPS" in text


def test_a_skipped_module_is_a_failure(workdir):
    job = pytest_job(workdir, "modskip",
                     "import pytest\npytest.skip('not here', allow_module_level=True)\n\n"
                     "def test_never():\n    assert True\n")
    assert not job.passed


def test_an_allow_listed_skip_is_counted_not_failed(tmp_path):
    # The project's conftest.py and pytest.ini, copied with one more allow-list entry into a
    # root of their own (under the project's root, its conftest.py would refuse the skip first).
    shutil.copy(REPO / "pytest.ini", tmp_path / "pytest.ini")
    nodeid = "test_sample.py::test_cpu"
    conftest = (REPO / "conftest.py").read_text().replace(
        "ALLOWED_SKIPS = {\n", f"ALLOWED_SKIPS = {{\n    {nodeid!r}: 'a CPU flag this machine may lack',\n", 1)
    assert nodeid in conftest
    (tmp_path / "conftest.py").write_text(conftest)
    job = pytest_job(tmp_path, "allowed", "import pytest\n\ndef test_runs():\n    assert True\n\n"
                                          "def test_cpu():\n    pytest.skip('no such CPU flag')\n")
    assert job.passed, job.reasons
    assert job.counts == {"passed": 1, "failed": 0, "skipped": 1}
    assert "test_sample.py:7: no such CPU flag" in job.logs[0].read_text()


def junit(path: Path, tests: int, failures: int = 0, errors: int = 0, skipped: int = 0) -> Path:
    path.write_text(f'<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
                    f'errors="{errors}" failures="{failures}" skipped="{skipped}" tests="{tests}"/></testsuites>')
    return path


def test_a_scenario_that_fails_is_red(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("CRITICAL Ansible return code was 2, command was: ansible-playbook converge.yml\n")
    job = rs.judge([rs.Job("app", "molecule", 1, 10.0, [log], junit(tmp_path / "j.xml", 0))], [])[0]
    assert not job.passed
    assert "exit code 1" in job.reasons


def test_a_scenario_whose_verifier_found_no_tests_is_red(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("INFO     Running app > verify\nWARNING  Skipping, no tests found.\n")
    job = rs.judge([rs.Job("app", "molecule", 0, 10.0, [log])], [])[0]
    assert not job.passed
    assert "pytest reported no tests: no test ran" in job.reasons


@pytest.mark.parametrize("shown", [
    pytest.param(SECRET, id="plain"),
    pytest.param(quote(SECRET + "/+", safe=""), id="url-escaped"),
    pytest.param(base64.b64encode(SECRET.encode()).decode(), id="base64"),
    pytest.param(base64.b64encode(b"admin:" + SECRET.encode()).decode(), id="base64-inside-basic-auth"),
])
def test_a_log_with_a_secret_is_red_and_names_it_without_the_value(tmp_path, shown):
    value = SECRET + "/+" if "%2F" in shown else SECRET
    log = tmp_path / "tls.log"
    log.write_text(f"  1:02 ok: [edge] => {{\"msg\": \"{shown}\"}}\n")
    job = rs.judge([rs.Job("tls", "molecule", 0, 180.0, [log], junit(tmp_path / "j.xml", 12))],
                   [("vault_db_password", value)])[0]
    assert not job.passed
    assert any("the value of vault_db_password appears in the output" in r for r in job.reasons), job.reasons
    assert all(value not in reason for reason in job.reasons)


def test_every_log_is_searched_with_every_secret_of_the_run(tmp_path, monkeypatch):
    # A key that the `app` job registered leaks into the lint job's log: the lint job is red.
    monkeypatch.setattr(rs, "LOGS", tmp_path)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = rs.job_env("app")
    monkeypatch.setenv(rs.check_log_secrets.REGISTER_VARIABLE, env[rs.check_log_secrets.REGISTER_VARIABLE])
    rs.check_log_secrets.record("app-ssh-key", key.read_text())
    lint_log = tmp_path / "lint.log"
    lint_log.write_text(f"yamllint ok\n{key.read_text().splitlines()[2]}\n")
    app_log = tmp_path / "app.log"
    app_log.write_text("  9:59 ok\n")
    app = rs.Job("app", "molecule", 0, 600.0, [app_log], junit(tmp_path / "app.junit.xml", 40))
    jobs = rs.judge([rs.Job("lint", "lint", 0, 60.0, [lint_log]), app],
                    rs.all_secrets(["app", "lint"]))
    lint, app = jobs
    assert not lint.passed and app.passed, (lint.reasons, app.reasons)
    assert "app-ssh-key (line 3)" in lint.reasons[0]
    assert "jobs: 1 passed, 1 failed" in rs.table(jobs)


def test_the_counts_come_from_pytest_junit_report(tmp_path):
    assert rs.pytest_counts(junit(tmp_path / "a.xml", 23, failures=1, errors=2, skipped=1)) == \
        {"passed": 19, "failed": 3, "skipped": 1}
    assert rs.pytest_counts(tmp_path / "missing.xml") is None
