"""Rules every test of the project runs under: the unit tests in tests/ and the testinfra
tests of each Molecule scenario (pytest.ini makes this directory their root, so this file
applies to both).

A skipped test proves nothing, so a skip is a FAILURE unless ALLOWED_SKIPS below lists the
test with the reason it may not apply on some machine. The same holds for xfail and for a
module skipped at collection.
"""

from __future__ import annotations

import pytest

# node id (without its parameters) -> why a skip of it is acceptable on some machines.
ALLOWED_SKIPS = {
    "molecule/hardening/tests/test_devsec_baselines.py::test_sysctl_33_nx":
        "the NX flag is read from /proc/cpuinfo's x86 'flags' line, which other architectures lack",
    "tests/test_testbed.py::test_no_engine_and_not_root_stops_with_advice_and_installs_nothing":
        "runs the script as an unprivileged user: needs root and setpriv on the machine",
    "tests/test_testbed.py::test_debootstrap_failure_names_the_step_and_tags_nothing":
        "builds an image with debootstrap: needs root and debootstrap on the machine",
}


def allowed_skip(nodeid: str) -> str | None:
    return ALLOWED_SKIPS.get(nodeid) or ALLOWED_SKIPS.get(nodeid.split("[", 1)[0])


def _skip_reason(report) -> str:
    if getattr(report, "wasxfail", None) is not None:
        return f"xfail: {report.wasxfail}"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _refuse(report, nodeid: str) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    if hasattr(report, "wasxfail"):
        del report.wasxfail
    report.longrepr = (f"{nodeid} was skipped ({reason}). A skip proves nothing: make the test run here, "
                       "or list it with the reason in ALLOWED_SKIPS (conftest.py at the project's root).")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and allowed_skip(item.nodeid) is None:
        _refuse(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped:
        _refuse(report, report.nodeid)

