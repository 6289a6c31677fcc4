"""The app role deploys the example app for real and keeps it serving through bad deploys.

Runs after converge and idempotence. The tests build on each other in file order:
deploy v1 -> rows -> redeploy v2 (into the other slot; the worker runs in the live slot only)
-> a rerun of v2 that changes nothing -> refused deploys (a missing env key, placeholder
secrets, a wrong pinned host key) -> a broken migration whose error message holds the secrets
-> a hook that fails after the switch (the traffic goes back) -> v2's image pulled from a registry that wants a login (a wrong password refused first)
instead of built.

The live slot is the one nginx's upstream points at: slot a on 127.0.0.1:8000 (Compose
project example-a), slot b on 127.0.0.1:8001 (example-b); the tests ask it, never assume it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import testlib  # noqa: E402

SERVER = "app-debian13"
testinfra_hosts = [f"ansible://{SERVER}"]

APP_ROOT = "/srv/example"
SECRETS = yaml.safe_load((Path(__file__).resolve().parents[1] / "group_vars/web/secrets.yml").read_text())
ENV_SECRETS = SECRETS["app_env_secrets"]
SLOT_PORTS = {"a": 8000, "b": 8001}
UPSTREAM = "/etc/nginx/conf.d/shipshape-upstream.conf"
# The keys the database gets (app_stateful_env_keys): no other key of the app reaches it.
STATEFUL_KEYS = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}

# A browser behind the TLS edge: HTTPS as told by X-Forwarded-Proto, the public host name,
# the session and CSRF cookies (Secure, so handled by hand over this plain-HTTP hop).
LOGIN_SCRIPT = r'''
import re, sys, urllib.error, urllib.parse, urllib.request
base = "http://127.0.0.1:" + sys.argv[2]
origin = "https://app.example.test"
headers = {"Host": "app.example.test", "X-Forwarded-Proto": "https"}
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
opener = urllib.request.build_opener(NoRedirect)
resp = opener.open(urllib.request.Request(base + "/admin/login/", headers=headers))
cookies = "; ".join(c.split(";", 1)[0] for c in resp.headers.get_all("Set-Cookie") or [])
token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', resp.read().decode()).group(1)
data = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": sys.argv[1],
                               "password": sys.stdin.read().strip(), "next": "/admin/"}).encode()
req = urllib.request.Request(base + "/admin/login/?next=/admin/", data=data, headers=dict(
    headers, Cookie=cookies, Origin=origin, Referer=origin + "/admin/login/"))
try:
    resp = opener.open(req)
    print(resp.status, resp.headers.get("Location", ""))
except urllib.error.HTTPError as err:
    print(err.code, err.headers.get("Location", ""))
'''


def live(host) -> dict:
    """The slot that serves: the one nginx's upstream points at, which must also be the slot
    whose link points at `current`."""
    upstream = host.file(UPSTREAM).content_string
    port = int(re.search(r"server 127\.0\.0\.1:(\d+);", upstream).group(1))
    slot = {p: s for s, p in SLOT_PORTS.items()}[port]
    current = host.run(f"readlink -f {APP_ROOT}/current").stdout.strip()
    assert current.startswith(f"{APP_ROOT}/releases/"), current
    assert host.run(f"readlink -f {APP_ROOT}/slots/{slot}").stdout.strip() == current, \
        f"nginx points at slot {slot}, but current ({current}) is not what that slot holds"
    return {"slot": slot, "port": port, "project": f"example-{slot}",
            "other": "b" if slot == "a" else "a", "release": current}


def url(host, path: str) -> str:
    return f"http://127.0.0.1:{live(host)['port']}{path}"


def health(host) -> dict:
    out = host.run(f"curl -s --max-time 10 -H 'Host: localhost' {url(host, '/health')}")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def commit_of(host, tag: str) -> str:
    out = host.run(f"git -c safe.directory='*' -C {APP_ROOT}/repo.git rev-parse {tag}^{{commit}}")
    assert out.rc == 0, out.stderr
    return out.stdout.strip()


def notes(host) -> list:
    out = host.run(f"curl -sf --max-time 10 -H 'Host: localhost' {url(host, '/api/notes')}")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def notes_digest(rows: list) -> str:
    content = sorted((r["id"], r["title"], r.get("body", "")) for r in rows)
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def api_headers() -> str:
    token = ENV_SECRETS.get("API_TOKEN")
    return f"-H 'X-Api-Token: {token}'" if token else ""


def flat(output: str) -> str:
    """A playbook's output with every run of whitespace made one space: the YAML results
    wrap long messages over lines."""
    return " ".join(output.split())


def ledger(host) -> list:
    return [json.loads(line) for line in host.file(f"{APP_ROOT}/releases.jsonl").content_string.splitlines()
            if line.strip()]


def running(host, service: str) -> list:
    """Names of the running containers of a Compose service, in any project."""
    return sorted(host.check_output(
        f"docker ps --filter label=com.docker.compose.service={service} --format '{{{{.Names}}}}'").split())


def state(host) -> dict:
    """What a refused deploy must leave exactly as it was."""
    return {
        "current": host.run(f"readlink {APP_ROOT}/current").stdout.strip(),
        "slots": host.run(f"readlink {APP_ROOT}/slots/a {APP_ROOT}/slots/b").stdout,
        "releases": host.run(f"ls -1 {APP_ROOT}/releases").stdout,
        "env": host.file(f"{APP_ROOT}/current/.env").sha256sum,
        "stateful_env": host.file(f"{APP_ROOT}/stateful/.env").sha256sum,
        "upstream": host.file(UPSTREAM).content_string,
        "containers": host.run("docker ps -q --no-trunc | sort").stdout,
    }


# ------------------------------------------------------------------ the deployed app

def test_bad_state_was_fixed_app_root_is_private(host):
    root = host.file(APP_ROOT)
    assert root.user == "deploy"
    assert root.mode == 0o750


def env_keys(content: str) -> set:
    return {line.split("=", 1)[0].strip() for line in content.splitlines()
            if "=" in line and not line.lstrip().startswith("#")}


def test_env_file_is_private_and_complete(host):
    env = host.file(f"{APP_ROOT}/current/.env")
    assert env.user == "deploy"
    assert env.mode == 0o600
    example = host.file(f"{APP_ROOT}/current/.env.example").content_string
    assert env_keys(example) <= env_keys(env.content_string)


def test_the_database_gets_only_its_own_keys(host):
    # The stateful services' env holds the database's keys and nothing else of the app's
    # env: no Django secret key, API token or admin password reaches the database.
    env = host.file(f"{APP_ROOT}/stateful/.env")
    assert env.user == "deploy"
    assert env.mode == 0o600
    assert env_keys(env.content_string) == STATEFUL_KEYS
    db_env = host.check_output("docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' example-data-db-1")
    for name, value in ENV_SECRETS.items():
        if name not in STATEFUL_KEYS:
            assert value not in db_env, f"{name} reached the database's container"
    assert not any(line.startswith(("SECRET_KEY=", "API_TOKEN=", "DJANGO_SUPERUSER_"))
                   for line in db_env.splitlines())


def test_health_reports_the_deployed_commit_and_the_database(host):
    body = health(host)
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["version"] == commit_of(host, "v1")


def published_ports(host) -> dict:
    """{compose service: [its host port bindings]} of every running container, e.g.
    {"web": ["127.0.0.1:8000->8000/tcp"], "db": []}; a port only exposed is no binding."""
    found = {}
    for line in host.check_output(
            "docker ps --format '{{.Label \"com.docker.compose.service\"}}|{{.Ports}}'").splitlines():
        service, _, ports = line.partition("|")
        found.setdefault(service, []).extend(p.strip() for p in ports.split(",") if "->" in p)
    return found


def test_web_is_published_on_loopback_only_and_db_not_at_all(host):
    # The whole set of bindings on the server: the web service of the live slot on IPv4
    # loopback (8000 for slot a, 8001 for slot b), nothing else; the other slot's containers
    # are stopped. A publish on every address (0.0.0.0:8000, [::]:8000 or :::8000), a second
    # port, a second web, or any publish of the worker or the database would be in it.
    port = live(host)["port"]
    assert published_ports(host) == {"web": [f"127.0.0.1:{port}->8000/tcp"], "worker": [], "db": []}


def login(host, password: str):
    script = base64.b64encode(LOGIN_SCRIPT.encode()).decode()
    return host.run(f"echo {script} | base64 -d > /tmp/login.py && "
                    f"python3 /tmp/login.py admin {live(host)['port']} <<'EOF'\n{password}\nEOF")


def test_admin_login_works_with_the_vault_password(host):
    # The Django preset's after-switch hook created the admin user from DJANGO_SUPERUSER_* of
    # the app's env, the password from the vault.
    good = login(host, ENV_SECRETS["DJANGO_SUPERUSER_PASSWORD"])
    assert good.stdout.split()[:2] == ["302", "/admin/"], good.stdout + good.stderr
    bad = login(host, "not-the-password")
    assert bad.stdout.split()[:1] == ["200"], bad.stdout + bad.stderr


# ------------------------------------------------------------------ redeploy

@pytest.fixture(scope="module")
def rows_before_redeploy(host):
    for i in range(3):
        out = host.run(
            f"curl -sf --max-time 10 -H 'Host: localhost' {api_headers()} -H 'Content-Type: application/json' "
            f"-d '{{\"title\": \"note {i}\", \"body\": \"kept across deploys\"}}' {url(host, '/api/notes')}")
        assert out.rc == 0, out.stderr
    rows = notes(host)
    assert len(rows) >= 3
    volume = host.run("docker volume ls -q --filter name=db").stdout.split()
    assert len(volume) == 1
    created = host.run(f"docker volume inspect -f '{{{{.CreatedAt}}}}' {volume[0]}").stdout.strip()
    return {"rows": rows, "volume": volume[0], "created": created, "live": live(host)}


def test_rows_survive_a_redeploy_of_a_newer_commit(host, rows_before_redeploy):
    run = testlib.run_playbook("converge.yml", {"app_version": "v2"})
    assert run.returncode == 0, run.stdout[-4000:]
    assert health(host)["version"] == commit_of(host, "v2")
    # The new release went to the other slot; the old slot's containers are stopped, kept.
    before, after = rows_before_redeploy["live"], live(host)
    assert after["slot"] == before["other"]
    assert after["release"] != before["release"]
    old_web = host.check_output(f"docker inspect -f '{{{{.State.Status}}}}' {before['project']}-web-1")
    assert old_web == "exited"
    last = ledger(host)[-1]
    assert (last["result"], last["commit"], last["slot"]) == ("success", commit_of(host, "v2"), after["slot"])
    assert last["previous"] == before["release"].rsplit("/", 1)[1]
    rows = notes(host)
    assert notes_digest(rows) == notes_digest(rows_before_redeploy["rows"])
    volume = host.run("docker volume ls -q --filter name=db").stdout.split()
    assert volume == [rows_before_redeploy["volume"]]
    created = host.run(f"docker volume inspect -f '{{{{.CreatedAt}}}}' {volume[0]}").stdout.strip()
    assert created == rows_before_redeploy["created"]


def test_the_worker_runs_in_the_live_slot_only(host):
    # The worker must never run twice: after the redeploy exactly one runs, the live slot's;
    # the old slot's worker is stopped (kept for a rollback).
    slot = live(host)
    assert running(host, "worker") == [f"{slot['project']}-worker-1"]
    assert running(host, "web") == [f"{slot['project']}-web-1"]
    old_worker = host.check_output(f"docker inspect -f '{{{{.State.Status}}}}' example-{slot['other']}-worker-1")
    assert old_worker == "exited"


def test_a_rerun_with_nothing_new_changes_nothing(host):
    before, lines = state(host), ledger(host)
    run = testlib.run_playbook("converge.yml", {"app_version": "v2"})
    assert run.returncode == 0, run.stdout[-4000:]
    assert testlib.recap(run.stdout)[SERVER]["changed"] == 0, run.stdout[-4000:]
    assert "nothing new to deploy" in flat(run.stdout)
    assert state(host) == before
    assert ledger(host) == lines, "a rerun that deployed nothing added a ledger line"
    assert not host.file(f"{APP_ROOT}/deploy.lock").exists


def test_containers_removed_by_hand_come_back_on_a_rerun(host):
    # A rerun with nothing new asks Compose nothing while every service runs; a worker
    # removed from the live slot, or the database container removed, is a service that
    # does not run: the rerun brings both back (the database with its volume).
    slot = live(host)
    worker = f"{slot['project']}-worker-1"
    host.check_output(f"docker rm -f {worker} example-data-db-1")
    assert running(host, "worker") == [] and running(host, "db") == []
    run = testlib.run_playbook("converge.yml", {"app_version": "v2"})
    assert run.returncode == 0, run.stdout[-4000:]
    assert testlib.recap(run.stdout)[SERVER]["changed"] > 0
    assert running(host, "worker") == [worker]
    assert running(host, "db") == ["example-data-db-1"]
    assert "nothing new to deploy" in flat(run.stdout)
    assert health(host)["database"] == "ok"


def test_a_missing_env_key_fails_before_anything_changes(host):
    before = state(host)
    run = testlib.run_playbook("converge.yml", {"app_version": "newkey"})
    assert run.returncode != 0
    assert "PAYMENT_API_KEY" in run.stdout
    assert "not configured" in run.stdout
    assert state(host) == before
    assert health(host)["version"] == commit_of(host, "v2")


def test_the_manifest_drives_the_deploy(host):
    # The inventory names no preset and no worker: the example's shipshape.yml does (Django's
    # hooks ran, the worker runs once, in the live slot only).
    settings = (Path(__file__).resolve().parents[1] / "group_vars/web/main.yml").read_text()
    assert "app_preset" not in settings and "app_once_services" not in settings
    hooks = [hook["name"] for entry in ledger(host) for hook in entry.get("hooks", [])]
    assert "migrate" in hooks and "create the admin user" in hooks
    assert running(host, "worker") == [f"{live(host)['project']}-worker-1"]


def test_a_manifest_that_breaks_the_contract_is_refused_before_anything_changes(host):
    before = state(host)
    run = testlib.run_playbook("converge.yml", {"app_version": "badmanifest"})
    assert run.returncode != 0
    text = flat(run.stdout)
    assert "shipshape.yml of the app at badmanifest" in text
    assert "hooks.before_switch[0].argv: must be a list, not a string" in text
    assert "line " in text.split("hooks.before_switch[0].argv")[0][-20:]  # the line is named
    assert state(host) == before
    assert health(host)["version"] == commit_of(host, "v2")


def test_placeholder_secrets_are_refused_before_anything_changes(host):
    before = state(host)
    placeholders = {"SECRET_KEY": "CHANGE_ME", "POSTGRES_PASSWORD": "changeme", "API_TOKEN": ""}
    # A stand-in for the one good secret: extra vars are on the run's command line, so in its log.
    secrets = {**placeholders, "DJANGO_SUPERUSER_PASSWORD": "stand-in-admin-password-W8nR5tY2"}
    run = testlib.run_playbook("converge.yml", {"app_version": "v2", "app_env_secrets": secrets})
    assert run.returncode != 0
    refusal = re.search(r"These env values are empty or placeholders: ([A-Za-z0-9_, ]+)\.", flat(run.stdout))
    assert refusal, run.stdout[-4000:]
    assert set(refusal.group(1).split(", ")) == set(placeholders)
    assert "Set real values in the inventory" in flat(run.stdout)
    assert "scripts/prepare.py generates strong secrets" in flat(run.stdout)
    assert state(host) == before
    assert health(host)["version"] == commit_of(host, "v2")


def test_a_wrong_pinned_host_key_stops_the_fetch_before_anything_changes(host, tmp_path):
    # A host key made here, so never the scenario's Git server's.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    wrong_key = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    before = state(host)
    mirror = host.run(f"git -c safe.directory='*' -C {APP_ROOT}/repo.git for-each-ref").stdout
    run = testlib.run_playbook("converge.yml", {"app_version": "v2",
                                                "app_known_hosts": [f"app-git {wrong_key}"]})
    assert run.returncode != 0
    assert "Host key verification failed" in flat(run.stdout), run.stdout[-4000:]
    assert state(host) == before
    assert host.run(f"git -c safe.directory='*' -C {APP_ROOT}/repo.git for-each-ref").stdout == mirror
    assert health(host)["version"] == commit_of(host, "v2")


def test_a_broken_migration_stops_the_deploy_masks_the_secrets_and_the_old_version_keeps_serving(host):
    rows = notes(host)
    dumps_before = host.run(f"ls {APP_ROOT}/backups/pre-migrate").stdout.split()
    # The tag's migration fails with an error message that holds the app's secret values.
    before = state(host)
    run = testlib.run_playbook("converge.yml", {"app_version": "leaky-migration"})
    assert run.returncode != 0
    assert "The hook 'migrate' (before_switch) failed" in flat(run.stdout), run.stdout[-4000:]
    assert "leaky migration cannot go on with" in flat(run.stdout), run.stdout[-4000:]
    for name, value in ENV_SECRETS.items():
        assert f"{name}=********" in run.stdout, f"{name} is not shown masked"
        assert value not in run.stdout, f"the value of {name} appears in the output"
    body = health(host)
    assert body["status"] == "ok"
    assert body["version"] == commit_of(host, "v2")
    assert notes_digest(notes(host)) == notes_digest(rows)
    # Nothing of the failed release is left: the live slot, its containers, nginx and the
    # releases are as they were (the migration ran in a one-off container, removed).
    assert state(host) == before
    dumps_after = host.run(f"ls {APP_ROOT}/backups/pre-migrate").stdout.split()
    assert len(set(dumps_after) - set(dumps_before)) == 1
    dump_dir = host.file(f"{APP_ROOT}/backups/pre-migrate")
    assert dump_dir.mode == 0o700
    # The release ledger has the failed deploy (the masked message, no secret), and the deploy
    # lock is released.
    ledger_text = host.file(f"{APP_ROOT}/releases.jsonl").content_string
    last = json.loads(ledger_text.splitlines()[-1])
    assert (last["result"], last["release"], last["commit"]) == ("failed", "", commit_of(host, "leaky-migration"))
    assert [(h["point"], h["name"], h["result"]) for h in last["hooks"]] == [
        ("before_switch", "migrate", "failed, exit 1")], last["hooks"]
    assert "leaky migration cannot go on with" in last["hooks"][0]["output"]
    assert "The hook 'migrate' (before_switch) failed" in last["failure"]
    for name, value in ENV_SECRETS.items():
        assert value not in ledger_text, f"the value of {name} is in the release ledger"
    assert host.file(f"{APP_ROOT}/releases.jsonl").mode == 0o640
    assert not host.file(f"{APP_ROOT}/deploy.lock").exists


def test_a_failing_after_switch_hook_puts_the_traffic_back(host):
    # v1 is new against v2 serving; the app's after-switch hook fails once the new release has
    # the traffic, so the old slot starts again, passes its health gate and gets it back.
    before, rows, old = state(host), notes(host), live(host)
    hooks = {"before_switch": [],
             "after_switch": [{"name": "warm the cache", "argv": ["sh", "-c", "echo cache warming failed >&2; exit 3"]}]}
    run = testlib.run_playbook("converge.yml", {"app_version": "v1", "app_hooks": hooks})
    assert run.returncode != 0
    out = flat(run.stdout)
    assert "The hook 'warm the cache' (after_switch) failed with exit 3" in out, run.stdout[-4000:]
    assert "cache warming failed" in out
    # The switch happened, then the switch back: the old slot's own containers serve again
    # (started, not recreated), with the same data.
    assert "TASK [app : Switch the traffic to the new slot]" in run.stdout
    assert "TASK [app : Switch the traffic back to the old slot]" in run.stdout
    assert live(host) == old
    assert health(host)["version"] == commit_of(host, "v2")
    assert notes_digest(notes(host)) == notes_digest(rows)
    after = state(host)
    for key in ("current", "releases", "env", "stateful_env", "upstream", "containers"):
        assert after[key] == before[key], key
    # The failed release is gone from the other slot (containers and link); one worker runs,
    # the live slot's.
    assert host.run(f"docker ps -aq --filter label=com.docker.compose.project=example-{old['other']}").stdout == ""
    assert not host.file(f"{APP_ROOT}/slots/{old['other']}").exists
    assert running(host, "worker") == [f"{old['project']}-worker-1"]
    last = ledger(host)[-1]
    assert (last["result"], last["release"], last["commit"]) == ("failed", "", commit_of(host, "v1"))
    assert [(h["point"], h["name"], h["result"]) for h in last["hooks"]] == [
        ("after_switch", "warm the cache", "failed, exit 3")], last["hooks"]
    assert not host.file(f"{APP_ROOT}/deploy.lock").exists


REGISTRY = "127.0.0.1:5000"
REGISTRY_USER = "shipshape-pull"
# Made at run time; given to the playbooks in a vars file, never on a command line.
REGISTRY_PASSWORD = secrets.token_urlsafe(24)
WRONG_REGISTRY_PASSWORD = secrets.token_urlsafe(24)


def registry_login_vars(password: str) -> str:
    path = testlib.ephemeral_dir() / "registry-login.yml"
    path.write_text(yaml.safe_dump({"app_registry_username": REGISTRY_USER,
                                    "app_registry_password": password}))
    path.chmod(0o600)
    return f"@{path}"


def test_the_app_image_can_come_from_a_registry_that_wants_a_login(host):
    # A registry for the server: Debian's docker-registry (the distribution registry) on the
    # server's loopback, where Docker speaks plain HTTP to a registry without extra settings,
    # with htpasswd logins. v2's image is pushed there, its registry name removed and the
    # engine logged out, so the deploy must log in and pull it.
    v2 = commit_of(host, "v2")
    image = f"{REGISTRY}/example/web"
    config = ("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/docker-registry\n"
              f"http:\n  addr: {REGISTRY}\n"
              "auth:\n  htpasswd:\n    realm: shipshape\n    path: /etc/docker/registry/htpasswd\n")
    setup = host.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
                     "docker-registry apache2-utils")
    assert setup.rc == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
    entry = testlib.docker_exec(SERVER, "htpasswd", "-B", "-n", "-i", REGISTRY_USER, input_text=REGISTRY_PASSWORD)
    assert entry.returncode == 0, entry.stderr
    testlib.docker_exec(SERVER, "sh", "-c", "cat > /etc/docker/registry/htpasswd", input_text=entry.stdout)
    setup = host.run(f"printf '{config}' > /etc/docker/registry/config.yml "
                     "&& systemctl restart docker-registry "
                     f"&& for i in $(seq 30); do [ \"$(curl -s -o /dev/null -w '%{{http_code}}' http://{REGISTRY}/v2/)\" = 401 ] "
                     "&& exit 0; sleep 1; done; exit 1")
    assert setup.rc == 0, setup.stdout[-2000:] + setup.stderr[-2000:]
    login = testlib.docker_exec(SERVER, "docker", "login", "-u", REGISTRY_USER, "--password-stdin", REGISTRY,
                                input_text=REGISTRY_PASSWORD)
    assert login.returncode == 0, login.stderr
    push = host.run(f"docker tag example-web:{v2} {image}:{v2} && docker push -q {image}:{v2} "
                    f"&& docker rmi {image}:{v2} && docker logout {REGISTRY}")
    assert push.rc == 0, push.stdout + push.stderr
    assert host.run(f"docker image inspect {image}:{v2}").rc != 0
    assert host.run(f"docker pull -q {image}:{v2}").rc != 0, "the registry must want a login"
    before = health(host)["version"]
    pull = {"app_version": "v2", "app_image_source": "pull", "app_image_name": image}

    # A wrong password: the play stops at the login, names the variables, pulls nothing.
    refused = testlib.run_playbook("converge.yml", pull, "-e", registry_login_vars(WRONG_REGISTRY_PASSWORD))
    assert refused.returncode != 0
    assert "app_registry_password" in refused.stdout, refused.stdout[-4000:]
    assert WRONG_REGISTRY_PASSWORD not in refused.stdout
    assert host.run(f"docker image inspect {image}:{v2}").rc != 0
    assert health(host)["version"] == before

    run = testlib.run_playbook("converge.yml", pull, "-e", registry_login_vars(REGISTRY_PASSWORD))
    assert run.returncode == 0, run.stdout[-4000:]
    assert REGISTRY_PASSWORD not in run.stdout
    pulled = run.stdout.split("TASK [app : Pull the app image]", 1)[1].split("TASK [", 1)[0]
    # The pull ran (the layers are already on the server, so the module may report "ok");
    # the registry's name of the image, removed above, is back only because it was pulled.
    assert re.search(rf"^(ok|changed): \[{SERVER}\]", pulled, re.M), pulled
    for build in run.stdout.split("TASK [app : Build the app image from the release's code]")[1:]:
        assert f"skipping: [{SERVER}]" in build.split("TASK [", 1)[0], "the image was built, not pulled"
    assert host.run(f"docker image inspect {image}:{v2}").rc == 0
    slot = live(host)
    images = host.run("docker ps --format '{{.Image}}' "
                      "--filter label=com.docker.compose.service=web").stdout.split()
    assert images == [f"{image}:{v2}"], images
    assert running(host, "web") == [f"{slot['project']}-web-1"]
    assert running(host, "worker") == [f"{slot['project']}-worker-1"]
    assert health(host)["version"] == v2
    # The login stays for later pulls (a rollback), in root's Docker config, root's alone.
    docker_config = host.file("/root/.docker/config.json")
    assert docker_config.mode == 0o600 and REGISTRY in docker_config.content_string
    # The refusal named the registry the login was for.
    assert f"to the registry {REGISTRY}" in flat(refused.stdout), refused.stdout[-4000:]


def test_no_secret_in_the_output_of_the_test_runs():
    log = (Path(testlib.os.environ["MOLECULE_PROJECT_DIRECTORY"]) / ".cache/molecule/app.runs.log").read_text()
    for name, value in [*ENV_SECRETS.items(), ("app_registry_password", REGISTRY_PASSWORD),
                        ("a wrong app_registry_password", WRONG_REGISTRY_PASSWORD)]:
        assert value not in log, f"the value of {name} appears in the output"
