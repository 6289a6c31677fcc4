"""Runs the role again with other input: a changed setting restarts the engine exactly once
(and running containers survive, live-restore); bad input fails naming it and leaves the old
daemon.json and the running engine alone; Debian 12 refuses the distribution's packages."""

import json

import pytest
import testlib
from conftest import INSTANCE, REFUSED, daemon_json_sha, docker_pid, ok, sh

testinfra_hosts = [f"ansible://{INSTANCE}"]

STARTED = "39f53479d3a045ac8e11786248231fbf"  # systemd's "unit started" message


def journal_cursor() -> str:
    return ok("journalctl -n 0 --show-cursor --no-pager").split("cursor: ")[1].strip()


def engine_starts_since(cursor: str) -> int:
    out = ok(f"journalctl --no-pager -o json --after-cursor='{cursor}' "
             f"UNIT=docker.service MESSAGE_ID={STARTED}")
    return len([line for line in out.splitlines() if line.strip()])


def container_started_at(name: str) -> str:
    return ok(f"docker inspect --format '{{{{.State.Running}}}} {{{{.State.StartedAt}}}}' {name}")


def test_changed_setting_restarts_docker_once(web):
    pid, cursor, started = docker_pid(), journal_cursor(), container_started_at(web)
    proc = testlib.run_playbook("converge.yml", {"docker_daemon_log_max_size": "20m"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert testlib.recap(proc.stdout)[INSTANCE]["changed"] == 2  # daemon.json + the restart
    assert docker_pid() != pid
    assert engine_starts_since(cursor) == 1
    assert json.loads(ok("cat /etc/docker/daemon.json"))["log-opts"]["max-size"] == "20m"
    assert ok("systemctl is-active docker") == "active"
    # live-restore: the container kept running through the restart.
    assert container_started_at(web) == started
    assert started.startswith("true ")

    # Back to the scenario's settings (only the daemon feature), again with one restart.
    cursor = journal_cursor()
    proc = testlib.run_playbook("converge.yml", None, "--tags", "docker_daemon")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert engine_starts_since(cursor) == 1
    assert json.loads(ok("cat /etc/docker/daemon.json"))["log-opts"]["max-size"] == "10m"


@pytest.mark.parametrize("extra_vars, named", [
    # Caught by `dockerd --validate` on the new file, before it replaces the old one.
    ({"docker_daemon_extra_options": {"bogus-option": 1}},
     ["failed to validate", "don't match any configuration option: bogus-option"]),
    # dockerd accepts any max-file string; the role's own check refuses it first.
    ({"docker_daemon_log_max_file": "abc"}, ["docker_daemon_log_max_file", '("abc")']),
], ids=["unknown-daemon-option", "non-numeric-max-file"])
def test_bad_input_fails_and_changes_nothing(extra_vars, named):
    sha, pid, cursor = daemon_json_sha(), docker_pid(), journal_cursor()
    # Only the daemon feature (and the input checks) run: an operator changing a setting.
    proc = testlib.run_playbook("converge.yml", extra_vars, "--tags", "docker_daemon")
    assert proc.returncode != 0
    for text in named:
        assert text in proc.stdout, proc.stdout[-3000:]
    result = testlib.recap(proc.stdout)[INSTANCE]
    assert result["failed"] == 1 and result["changed"] == 0, result
    assert daemon_json_sha() == sha
    assert docker_pid() == pid
    assert engine_starts_since(cursor) == 0
    assert ok("systemctl is-active docker") == "active"


def test_distribution_source_refused_on_debian12():
    proc = testlib.run_playbook("converge.yml", {"docker_test_hosts": REFUSED})
    assert proc.returncode != 0
    assert "docker_install_source" in proc.stdout and "Compose v2" in proc.stdout
    result = testlib.recap(proc.stdout)[REFUSED]
    assert result["failed"] == 1 and result["changed"] == 0, result
    assert sh("test -e /etc/docker", REFUSED).returncode != 0
    assert sh("dpkg-query -W docker.io", REFUSED).returncode != 0
    assert sh("getent group docker", REFUSED).returncode != 0


def test_auto_source_on_debian12_asks_for_dockers_repository():
    proc = testlib.run_playbook("converge.yml", {"docker_test_hosts": REFUSED, "docker_install_source": "auto"})
    assert proc.returncode != 0
    assert "docker_upstream_repo_url" in proc.stdout and "docker_upstream_gpg_key_url" in proc.stdout
    result = testlib.recap(proc.stdout)[REFUSED]
    assert result["failed"] == 1 and result["changed"] == 0, result
    assert sh("test -e /etc/apt/sources.list.d/docker.sources", REFUSED).returncode != 0
    assert sh("test -e /etc/apt/keyrings/docker.asc", REFUSED).returncode != 0
