"""The engine the role installed: running, Compose v2, the daemon settings in force, the
planted problems (debug, no log rotation, no live-restore, stale prune crons) gone."""

import json

from conftest import INSTANCE, ok, sh

testinfra_hosts = [f"ansible://{INSTANCE}"]


def test_engine_is_active_and_enabled(host):
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_compose_is_v2(host):
    version = host.check_output("docker compose version --short").strip()
    assert version.lstrip("v").split(".")[0] == "2", version


def test_daemon_json_replaced_the_planted_one(host):
    config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert "debug" not in config
    assert config["live-restore"] is True
    assert config["ip"] == "127.0.0.1"
    assert config["log-driver"] == "json-file"
    assert config["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert config["default-address-pools"] == [{"base": "172.20.0.0/14", "size": 24}]
    assert host.file("/etc/docker/daemon.json").mode == 0o644


def test_running_engine_uses_the_new_settings():
    # The engine in memory, not only the file: debug off, live-restore on, log rotation default.
    info = json.loads(ok("docker info --format '{{json .}}'"))
    assert info["Debug"] is False
    assert info["LiveRestoreEnabled"] is True
    assert info["LoggingDriver"] == "json-file"


def test_stale_prune_crons_are_gone(host):
    for path in ("/etc/cron.daily/docker-prune", "/etc/cron.d/docker-prune"):
        assert not host.file(path).exists, path


def test_deploy_user_runs_docker(host):
    assert "docker" in host.user("deploy").groups
    proc = sh("runuser -u deploy -- docker ps --format '{{.Names}}'")
    assert proc.returncode == 0, proc.stderr


def test_other_users_cannot_run_docker():
    # The socket is root:docker 0660, so membership is what grants access.
    assert ok("stat -c '%U:%G %a' /run/docker.sock") == "root:docker 660"
    proc = sh("runuser -u nobody -- docker ps")
    assert proc.returncode != 0
    assert "permission denied" in proc.stderr.lower()


def test_python_bindings_reach_the_engine():
    # What the community.docker modules need on the server, from Debian's packages.
    out = ok("python3 -c 'import docker, requests; print(docker.from_env().ping())'")
    assert out == "True"
    assert sh("dpkg-query -W python3-docker python3-requests").returncode == 0


def test_docker_iptables_management_stays_on():
    # The firewall role works with Docker's own chains; they must exist.
    assert sh("iptables -t nat -S DOCKER >/dev/null").returncode == 0
    assert sh("iptables -S DOCKER-USER >/dev/null").returncode == 0
