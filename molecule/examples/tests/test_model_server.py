"""The model server (examples/model-server) deployed by the app role behind the tls role's
HTTPS edge, probed from the controller as a client on the internet.

Its model is not in Git: the deploy fetches it from the artifacts' web server on
examples-acme, checks its sha256 against the app's shipshape.yml, and the release mounts it
read-only. Runs after converge and idempotence; the tests build on each other in file order:
v1 serves -> v2 (the same model) refused without a URL, then deployed while the web server is
down (the model comes from the cache) -> v3 (a retrained model) refused when the file at the URL
is another one or missing, then deployed -> a rollback to v2 and its model -> each of these
runs was announced to the team's webhook (the receiver on examples-acme) -> the day-2
commands: a one-off command in the live release, the logs.Every test takes testinfra's `host` (a parameter of the module), so pytest keeps them in file order.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import testlib  # noqa: E402
from tlsprobe import https  # noqa: E402

SERVER = "examples-web"
ACME = "examples-acme"
NAME = "model.example.test"
testinfra_hosts = [f"ansible://{SERVER}"]

REPO = Path(__file__).resolve().parents[3]
APP_ROOT = "/srv/model"
UPSTREAM = "/etc/nginx/conf.d/shipshape-upstream.conf"
SLOT_PORTS = {8000: "a", 8001: "b"}
PIN = yaml.safe_load((REPO / "examples/model-server/shipshape.yml").read_text())["artifacts"][0]["sha256"]
CACHE = REPO / ".cache/molecule/examples"
TOKEN = yaml.safe_load((REPO / "molecule/examples/group_vars/web/secrets.yml").read_text())["app_env_secrets"]["API_TOKEN"]
RETRAINED = hashlib.sha256((CACHE / "artifacts/model-retrained.npy").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def web_ip() -> str:
    return testlib.container_ip(SERVER)


def call(web_ip, cafile, path: str, payload: dict | None = None) -> tuple[int, dict]:
    """A request to the app over HTTPS, its certificate checked against Pebble's root."""
    if payload is None:
        status, _, body = https(web_ip, NAME, cafile, path)
    else:
        status, _, body = https(web_ip, NAME, cafile, path, method="POST", body=json.dumps(payload).encode(),
                                headers={"Content-Type": "application/json"})
    return status, json.loads(body)


def commit_of(tag: str) -> str:
    return subprocess.run(["git", "-C", str(CACHE / "model.git"), "rev-parse", f"{tag}^{{commit}}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def expected(features: list, model: str = "model.npy") -> dict:
    """The answer of a model file, computed here from its weights."""
    data = (CACHE / "artifacts" / model).read_bytes()
    header_len = struct.unpack("<H", data[8:10])[0]
    w1, w2, b = struct.unpack("<3d", data[10 + header_len:])
    probability = round(1 / (1 + math.exp(-(w1 * features[0] + w2 * features[1] + b))), 4)
    return {"label": int(probability >= 0.5), "probability": probability}


def live_container(host) -> str:
    """The id of the web container of the slot nginx points at."""
    port = int(re.search(r"server 127\.0\.0\.1:(\d+);", host.file(UPSTREAM).content_string).group(1))
    project = f"model-{SLOT_PORTS[port]}"
    return host.check_output(f"docker ps -q --no-trunc --filter label=com.docker.compose.project={project} "
                             "--filter label=com.docker.compose.service=web")


def state(host) -> dict:
    """What a refused deploy must leave exactly as it was."""
    container = live_container(host)
    return {
        "current": host.run(f"readlink {APP_ROOT}/current").stdout.strip(),
        "releases": host.run(f"ls -1 {APP_ROOT}/releases").stdout,
        "cache": host.run(f"ls -1 {APP_ROOT}/artifacts").stdout,
        "upstream": host.file(UPSTREAM).content_string,
        "container": container,
        "started": host.check_output(f"docker inspect -f '{{{{.State.StartedAt}}}}' {container}"),
    }


def last_ledger_line(host) -> dict:
    return json.loads(host.file(f"{APP_ROOT}/releases.jsonl").content_string.splitlines()[-1])


def flat(output: str) -> str:
    return " ".join(output.split())


# ------------------------------------------------------------------ v1 serves

def test_the_model_server_answers_over_https_with_its_model_loaded(host, web_ip, cafile):
    status, body = call(web_ip, cafile, "/health")
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["model"] == "loaded"
    assert body["model_sha256"] == PIN
    assert body["version"] == commit_of("v1")


@pytest.mark.parametrize("features", [[1.0, 1.0], [0.0, 0.0], [0.2, 0.5]])
def test_predict_gives_the_answer_of_the_pinned_model(host, web_ip, cafile, features):
    status, body = call(web_ip, cafile, "/predict", {"features": features})
    assert status == 200, body
    assert body == expected(features)


def test_a_request_of_the_wrong_shape_is_refused(host, web_ip, cafile):
    status, _ = call(web_ip, cafile, "/predict", {"features": [1.0]})
    assert status == 422


def test_the_model_is_in_the_release_and_read_only_in_the_container(host):
    release = host.run(f"readlink -f {APP_ROOT}/current").stdout.strip()
    model = host.file(f"{release}/artifacts/model.npy")
    assert model.sha256sum == PIN
    cached = host.file(f"{APP_ROOT}/artifacts/{PIN}")
    assert host.check_output(f"stat -c %i {model.path}") == host.check_output(f"stat -c %i {cached.path}")
    container = live_container(host)
    mounts = json.loads(host.check_output(f"docker inspect -f '{{{{json .Mounts}}}}' {container}"))
    assert [(m["Source"], m["Destination"], m["RW"]) for m in mounts] == [(f"{release}/artifacts", "/models", False)]
    assert host.check_output(f"docker exec {container} id -u") == "10001"


def test_the_app_has_no_database(host):
    assert host.check_output("docker ps -a -q --filter label=com.docker.compose.project=model-data") == ""
    assert not host.file(f"{APP_ROOT}/stateful/compose.db.yaml").exists


# ------------------------------------------------------------------ refused deploys

def test_an_artifact_without_a_url_is_refused_before_anything_changes(host, web_ip, cafile):
    before = state(host)
    run = testlib.run_playbook("converge.yml", {"app_version": "v2", "app_artifact_urls": {}}, "--limit", SERVER)
    assert run.returncode != 0
    assert "the artifact model.npy has no URL: set app_artifact_urls" in flat(run.stdout), run.stdout[-3000:]
    assert state(host) == before
    assert call(web_ip, cafile, "/health")[1]["version"] == commit_of("v1")


def test_a_new_version_takes_the_model_from_the_cache(host, web_ip, cafile):
    # The artifacts' web server is down: v2 pins the same model, which the cache holds.
    testlib.docker_exec(ACME, "systemctl", "stop", "artifacts-http")
    try:
        run = testlib.run_playbook("converge.yml", {"app_version": "v2"}, "--limit", SERVER)
    finally:
        testlib.docker_exec(ACME, "systemctl", "start", "artifacts-http")
    assert run.returncode == 0, run.stdout[-3000:]
    status, body = call(web_ip, cafile, "/health")
    assert (status, body["version"], body["model_sha256"]) == (200, commit_of("v2"), PIN)
    assert call(web_ip, cafile, "/predict", {"features": [1.0, 1.0]})[1] == expected([1.0, 1.0])
    # One file in the cache, linked into both releases.
    assert host.check_output(f"ls -1 {APP_ROOT}/artifacts").split() == [PIN]
    assert host.check_output(f"stat -c %h {APP_ROOT}/artifacts/{PIN}") == "3"


@pytest.mark.parametrize("file, error", [
    ("model.npy", "did not match"),
    ("no-such-model.npy", "HTTP Error 404"),
], ids=["another-sha256", "missing"])
def test_a_model_that_is_not_the_pinned_one_stops_the_deploy_before_the_switch(host, web_ip, cafile, file, error):
    # v3 pins the retrained model; the URL gives another file, or none.
    before = state(host)
    run = testlib.run_playbook("converge.yml", {
        "app_version": "v3", "app_artifact_urls": {"model.npy": f"http://{ACME}:8080/{file}"}}, "--limit", SERVER)
    assert run.returncode != 0
    text = flat(run.stdout)
    assert 'failed at "Fetch each artifact and check its sha256"' in text, run.stdout[-3000:]
    assert error in text, run.stdout[-3000:]
    # The live release serves on, in the same container; nothing of v3 and no unpinned file stays.
    assert state(host) == before
    status, body = call(web_ip, cafile, "/health")
    assert (status, body["version"], body["model_sha256"]) == (200, commit_of("v2"), PIN)
    last = last_ledger_line(host)
    assert (last["result"], last["commit"]) == ("failed", commit_of("v3"))
    assert not host.file(f"{APP_ROOT}/deploy.lock").exists


def test_a_new_model_deploys_with_its_version(host, web_ip, cafile):
    run = testlib.run_playbook("converge.yml", {
        "app_version": "v3", "app_artifact_urls": {"model.npy": f"http://{ACME}:8080/model-retrained.npy"}},
        "--limit", SERVER)
    assert run.returncode == 0, run.stdout[-3000:]
    status, body = call(web_ip, cafile, "/health")
    assert (status, body["version"], body["model_sha256"]) == (200, commit_of("v3"), RETRAINED)
    for features in ([1.0, 1.0], [0.2, 0.5]):
        assert call(web_ip, cafile, "/predict", {"features": features})[1] == expected(features, "model-retrained.npy")
    assert expected([0.2, 0.5], "model-retrained.npy") != expected([0.2, 0.5])  # the models differ
    assert sorted(host.check_output(f"ls -1 {APP_ROOT}/artifacts").split()) == sorted([PIN, RETRAINED])


def test_a_rollback_puts_the_previous_version_back_with_its_model(host, web_ip, cafile):
    run = testlib.run_playbook(REPO / "playbooks/rollback.yml", None, "--limit", SERVER)
    assert run.returncode == 0, run.stdout[-3000:]
    status, body = call(web_ip, cafile, "/health")
    assert (status, body["version"], body["model_sha256"]) == (200, commit_of("v2"), PIN)
    assert call(web_ip, cafile, "/predict", {"features": [0.2, 0.5]})[1] == expected([0.2, 0.5])


def test_each_deploy_and_rollback_was_announced(host):
    out = testlib.docker_exec(ACME, "cat", "/var/log/alerts.jsonl").stdout
    messages = [json.loads(line)["body"] for line in out.splitlines()]
    runs = [(m["shipshape"]["kind"], m["shipshape"]["version"], m["shipshape"]["result"])
            for m in messages if "shipshape" in m]
    assert runs == [("deploy", "v1", "success"), ("deploy", "v2", "failed"), ("deploy", "v2", "success"),
                    ("deploy", "v3", "failed"), ("deploy", "v3", "failed"), ("deploy", "v3", "success"),
                    ("rollback", "v2", "success")], runs
    texts = [m["text"] for m in messages if "shipshape" in m]
    assert texts[3].startswith(f"model on {SERVER}: deploy of v3 ({commit_of('v3')[:12]}) FAILED in ")
    assert 'Fetch each artifact and check its sha256' in texts[3]
    assert texts[3].endswith("still serves")
    assert "succeeded in" in texts[5] and texts[5].endswith("serves")


def test_a_one_off_command_runs_in_a_fresh_container_of_the_live_release(host):
    before = host.check_output("docker ps -aq | sort")
    argv = ["python3", "-c", "import os; print('token', os.environ['API_TOKEN']); "
            "print('model', open('/models/model.npy', 'rb').read(6)[1:].decode())"]
    run = testlib.run_playbook(REPO / "playbooks/exec.yml", {"app_exec_argv": argv, "exec_hosts": SERVER})
    assert run.returncode == 0, run.stdout[-3000:]
    assert "token ********" in run.stdout and "model NUMPY" in run.stdout, run.stdout[-3000:]
    assert TOKEN not in run.stdout
    assert host.check_output("docker ps -aq | sort") == before  # nothing left behind
    failed = testlib.run_playbook(REPO / "playbooks/exec.yml", {
        "app_exec_argv": ["python3", "-c", "raise SystemExit(3)"], "exec_hosts": SERVER})
    assert failed.returncode != 0 and "The command exited with 3" in flat(failed.stdout), failed.stdout[-3000:]


def test_the_logs_show_the_lines_that_match(host, web_ip, cafile):
    assert call(web_ip, cafile, "/predict", {"features": [1.0, 1.0]})[0] == 200
    run = testlib.run_playbook(REPO / "playbooks/logs.yml", {
        "app_logs_since": "10m", "app_logs_pattern": "POST /predict"}, "--limit", SERVER)
    assert run.returncode == 0, run.stdout[-3000:]
    shown = flat(run.stdout.split("Show the lines that match", 1)[1].split("PLAY RECAP")[0]).replace('\\"', '"')
    assert '"POST /predict HTTP/1.1" 200' in shown, shown[-3000:]
    assert '"GET /health' not in shown, shown[-3000:]  # the health checks' lines did not match
    assert "\\u001b" not in shown  # no terminal control sequences
