"""Two web hosts behind a load balancer, one shared database host, as visitors and an operator see them.

Visitors reach the site through the balancer (multi-lb: nginx, round robin, a failed request is
not retried on the other host), over HTTPS with the balancer's certificate as the only trusted
CA. The probes of the database port run from other containers on the scenario network. The
tests run in file order and build on each other: converge deployed v1; a backup on the
database host, restored there with the app stopped on both web hosts; a rolling deploy of v3
(a release with a migration) under constant load; a release that fails its health gate on the
first host, which must stop the rollout there; a rollback refused by the database's schema,
then forced, host by host under load. These are also the suite's proofs of the zero-downtime
release path on each host (two slots, health gate, one nginx switch, the old slot stopped and
kept, no rebuild on rollback) and that the shared database host holds the database's keys only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
import testlib  # noqa: E402
import yaml  # noqa: E402
from loadgen import Load, describe  # noqa: E402

WEB1, WEB2, DB, BALANCER = "multi-web1", "multi-web2", "multi-db", "multi-lb"
NAME = "app.example.test"
REPO = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
CACHE = REPO / ".cache/molecule/multihost"
BALANCER_CA = CACHE / "balancer.pem"
PLAYBOOKS = REPO / "playbooks"
APP_ROOT = "/srv/example"
DUMPS = f"{APP_ROOT}/backups/pre-migrate"
SAFETY_DUMPS = "/var/backups/example/safety"  # taken before a restore
LOAD_RATE = 25
# The app's two slots (Compose projects) and the port each publishes on 127.0.0.1.
SLOTS = {"a": ("example-a", 8000), "b": ("example-b", 8001)}
SECRETS = yaml.safe_load((Path(__file__).resolve().parents[1] / "group_vars/all/secrets.yml").read_text())[
    "app_env_secrets"]
API_TOKEN = SECRETS["API_TOKEN"]
# The keys the database gets on its host; the others are the app's alone.
DATABASE_KEYS = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}


def address(host: str) -> str:
    return json.loads((CACHE / "addresses.json").read_text())[host]


def on(host: str, command: str) -> subprocess.CompletedProcess:
    """A shell command inside a host container."""
    return testlib.docker_exec(host, "sh", "-c", command, timeout=60)


def https(ip: str, path: str, *curl_args: str, cafile: Path | None = BALANCER_CA) -> tuple[int, str]:
    """(status, body) of a request to NAME at ip; without a CA file the certificate is not checked."""
    trust = ["--cacert", str(cafile)] if cafile else ["--insecure"]
    proc = subprocess.run(
        ["curl", "-sS", "--max-time", "15", *trust, "--resolve", f"{NAME}:443:{ip}", "-w", "\n%{http_code}",
         *curl_args, f"https://{NAME}{path}"],
        capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    body, status = proc.stdout.rsplit("\n", 1)
    return int(status), body


def on_web_host(host: str, path: str, *curl_args: str) -> tuple[int, str]:
    """Straight to one web host's nginx (its temporary self-signed certificate), past the balancer."""
    return https(address(host), path, *curl_args, cafile=None)


def commit_of(tag: str) -> str:
    out = on(WEB1, f"git -c safe.directory='*' -C {APP_ROOT}/repo.git rev-parse {tag}^{{commit}}")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def current_commit(host: str) -> str:
    return current_release(host)["commit"]


def ledger(host: str) -> list:
    out = on(host, f"cat {APP_ROOT}/releases.jsonl")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line]


def current_release(host: str) -> dict:
    out = on(host, f"cat {APP_ROOT}/current/release.json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def releases(host: str) -> list:
    return on(host, f"ls {APP_ROOT}/releases").stdout.split()


def live_slot(host: str) -> str:
    """The slot whose link points at the release `current` points at."""
    out = on(host, " ".join(f'echo "$(readlink {APP_ROOT}/{link})";' for link in ("current", "slots/a", "slots/b")))
    current, slot_a, slot_b = out.stdout.split("\n")[:3]
    name = Path(current).name
    assert name, f"{host}: {APP_ROOT}/current points nowhere"
    slots = [slot for slot, link in (("a", slot_a), ("b", slot_b)) if link and Path(link).name == name]
    assert len(slots) == 1, f"{host}: current -> {current}, slots/a -> {slot_a}, slots/b -> {slot_b}"
    return slots[0]


def slot_containers(host: str, slot: str) -> list:
    """(service, state) of every container of the slot's Compose project, running or not."""
    out = on(host, f"docker ps -a --filter label=com.docker.compose.project={SLOTS[slot][0]} "
                   "--format '{{.Label \"com.docker.compose.service\"}} {{.State}}'")
    assert out.returncode == 0, out.stderr
    return sorted(tuple(line.split(" ", 1)) for line in out.stdout.splitlines() if line.strip())


def assert_at_rest(host: str) -> str:
    """After a deploy or rollback: nginx points at the live slot's port, the live slot runs the
    web service and the worker (once), the other slot runs nothing (its containers, where a
    release left them, are stopped and kept) and no deploy lock is left. Returns the live slot."""
    live = live_slot(host)
    idle = "b" if live == "a" else "a"
    text = on(host, "cat /etc/nginx/conf.d/shipshape-upstream.conf").stdout
    assert re.search(rf"server 127\.0\.0\.1:{SLOTS[live][1]};", text), f"{host} (live slot {live}): {text}"
    running = [service for service, state in slot_containers(host, live) if state == "running"]
    assert sorted(running) == ["web", "worker"], f"{host}: slot {live} runs {running}"
    assert [c for c in slot_containers(host, idle) if c[1] == "running"] == [], \
        f"{host}: the idle slot {idle} runs {slot_containers(host, idle)}"
    assert on(host, f"test -e {APP_ROOT}/deploy.lock").returncode != 0, f"{host}: a deploy lock was left"
    return live


WORKER_EVENTS = "/tmp/worker-events"


def workers_running(host: str) -> set:
    return set(on(host, "docker ps --filter label=com.docker.compose.service=worker --format '{{.Names}}'").stdout.split())


def watch_workers(host: str) -> set:
    """Record from now on when a worker container starts or dies on host (Docker's events, as
    they happen: the engine keeps only its last 256 events). Returns the workers running now."""
    running = workers_running(host)
    command = (f"echo $$ > {WORKER_EVENTS}.pid; exec docker events --filter type=container "
               "--filter label=com.docker.compose.service=worker --filter event=start --filter event=die "
               f"--format '{{{{.TimeNano}}}} {{{{.Action}}}} {{{{.Actor.Attributes.name}}}}' > {WORKER_EVENTS}.log")
    on(host, f"rm -f {WORKER_EVENTS}.pid {WORKER_EVENTS}.log")
    subprocess.run(["docker", "exec", "-d", host, "sh", "-c", command], check=True, timeout=30)
    for _ in range(50):
        if on(host, f"test -s {WORKER_EVENTS}.pid").returncode == 0:
            break
        time.sleep(0.2)
    time.sleep(1)  # the stream is subscribed
    return running


def worker_overlaps(host: str, running: set) -> list:
    """Stop the recording of watch_workers and replay it from the workers `running` then: each
    time a worker started while another one ran (the worker is in app_once_services, it must
    never run twice)."""
    time.sleep(1)
    on(host, f"kill $(cat {WORKER_EVENTS}.pid)")
    out = on(host, f"cat {WORKER_EVENTS}.log")
    assert out.returncode == 0, out.stderr
    running, overlaps = set(running), []
    for line in sorted(out.stdout.splitlines(), key=lambda line: int(line.split()[0])):
        _, action, name = line.split(" ", 2)
        if action == "start":
            if running - {name}:
                overlaps.append(f"{name} started while {', '.join(sorted(running))} ran")
            running.add(name)
        elif action == "die":
            running.discard(name)
    return overlaps


def hook_results(entry: dict) -> dict:
    """{hook name: result} of a ledger entry."""
    return {hook["name"]: hook["result"] for hook in entry.get("hooks", [])}


def dumps(host: str) -> list:
    return on(host, f"ls {DUMPS} 2>/dev/null").stdout.split()


def database_containers(host: str) -> list:
    return on(host, "docker ps -q --filter label=com.docker.compose.project=example-data").stdout.split()


def connects(source: str, ip: str, port: int) -> bool:
    """Whether a TCP connection from inside the container `source` to ip:port succeeds."""
    probe = (f"import socket; socket.create_connection(('{ip}', {port}), timeout=3).close()")
    return testlib.docker_exec(source, "python3", "-c", probe, timeout=30).returncode == 0


def notes() -> list:
    status, body = https(address(BALANCER), "/api/notes")
    assert status == 200, body
    return json.loads(body)


@contextmanager
def under_load(label: str):
    """Constant HTTPS load on /health through the balancer while the body runs; the summary is
    also kept in the scenario cache (load-LABEL.txt) for the record."""
    load = Load(address(BALANCER), NAME, str(BALANCER_CA), "/health", rate=LOAD_RATE).start()
    try:
        yield load
    finally:
        load.summary = load.stop()
        seen = load.summary["versions"]
        # Round robin over hosts on different versions alternates them: keep the first and last.
        text = describe(dict(load.summary, versions=seen[:1] + seen[-1:] if len(seen) > 2 else seen))
        text += f" ({max(len(seen) - 1, 0)} changes of version between requests)"
        print(f"\nload: {text}")
        (CACHE / f"load-{label}.txt").write_text(text + "\n")


def deploy(version: str) -> subprocess.CompletedProcess:
    return testlib.run_playbook(PLAYBOOKS / "app.yml", {"app_version": version}, timeout=1200)


def result_lines(output: str, host: str) -> list:
    """Indexes of the output lines that report a task's result on host (also when delegated)."""
    return [i for i, line in enumerate(output.splitlines())
            if line.startswith(("ok: [", "changed: [", "skipping: [", "fatal: [", "failed: [")) and f"[{host}" in line]


def played(run: subprocess.CompletedProcess, play: str) -> str:
    """The output of a playbook run from the play named `play` on."""
    return run.stdout[run.stdout.index(f"PLAY [{play}]"):]


def assert_host_by_host(output: str) -> None:
    """Every result of the first web host comes before the first result of the second."""
    assert max(result_lines(output, WEB1)) < min(result_lines(output, WEB2)), "the web hosts were not done one at a time"


def assert_no_failed_request(load, first: str, last: str) -> None:
    assert load.summary["failed"] == 0, load.summary["failures"]
    seen = load.summary["versions"]
    assert seen[0] == first and seen[-1] == last, seen


def assert_serves(version: str) -> None:
    """Each web host answers /health with the version (straight, past the balancer)."""
    for host in (WEB1, WEB2):
        status, body = on_web_host(host, "/health")
        assert status == 200 and json.loads(body)["version"] == version, f"{host}: {body}"


# ------------------------------------------------------------------ the topology

def test_both_web_hosts_serve_the_same_data_from_the_shared_database():
    assert_serves(commit_of("v1"))
    status, body = on_web_host(WEB1, "/api/notes", "-X", "POST", "-H", f"X-Api-Token: {API_TOKEN}",
                               "-H", "Content-Type: application/json",
                               "--data", json.dumps({"title": "written on web1", "body": "read on web2"}))
    assert status == 201, body
    status, body = on_web_host(WEB2, "/api/notes")
    assert status == 200, body
    assert "written on web1" in [note["title"] for note in json.loads(body)]


def test_only_the_database_host_runs_the_database_and_keeps_the_dumps():
    assert database_containers(DB), "no running database container on the database host"
    for host in (WEB1, WEB2):
        assert database_containers(host) == [], f"{host} runs a database of its own"
        assert dumps(host) == [], f"{host} has pre-migration dumps"
    # The first deploy migrated the empty database, after a dump taken on the database host.
    assert [name for name in dumps(DB) if name.endswith(".dump")], "no pre-migration dump on the database host"


def test_the_database_port_answers_the_web_hosts_only():
    db = address(DB)
    # Published on the private address; the firewall is what keeps the others out.
    ports = on(DB, "docker ps --format '{{.Ports}}' --filter label=com.docker.compose.project=example-data").stdout
    assert f"{db}:5432->5432/tcp" in ports, ports
    assert connects(WEB1, db, 5432) and connects(WEB2, db, 5432)
    assert not connects(BALANCER, db, 5432), "the balancer reaches PostgreSQL on the database host"


def test_the_database_host_holds_the_database_keys_and_none_of_the_apps_secrets():
    keys = on(DB, f"sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p' {APP_ROOT}/stateful/.env")
    assert keys.returncode == 0, keys.stderr
    assert set(keys.stdout.split()) == DATABASE_KEYS, keys.stdout
    assert on(DB, f"stat -c %a {APP_ROOT}/stateful/.env").stdout.strip() == "600"
    # No code on the database host (no release, no repository mirror, no deploy key): its
    # app directory holds the stateful services' files, the pre-migration dumps and the
    # database image's archive (the test bed has no registry) only, and no file there holds a
    # secret only the app has (searched with the values on stdin, never on a command line).
    assert sorted(on(DB, f"ls -A {APP_ROOT}").stdout.split()) == ["backups", "images", "stateful"]
    assert sorted(on(DB, f"ls -A {APP_ROOT}/stateful").stdout.split()) == [
        ".compose.env", ".env", "compose.db.published.yaml", "compose.db.yaml"]
    app_only = [SECRETS[key] for key in ("SECRET_KEY", "API_TOKEN", "DJANGO_SUPERUSER_PASSWORD")]
    found = testlib.docker_exec(DB, "grep", "-rlF", "-f", "-", APP_ROOT,
                                input_text="\n".join(app_only) + "\n", timeout=60)
    assert (found.returncode, found.stdout) == (1, ""), \
        f"files on {DB} with a secret of the app: {found.stdout} {found.stderr}"
    # The web hosts' releases have the app's whole env; the database's keys are among them.
    for host in (WEB1, WEB2):
        env = on(host, f"sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p' {APP_ROOT}/current/.env").stdout.split()
        assert {"SECRET_KEY", "API_TOKEN"} | DATABASE_KEYS <= set(env), f"{host}: {env}"


def test_the_backups_run_on_the_database_host():
    for host in (WEB1, WEB2):
        assert on(host, "systemctl cat shipshape-backup.timer").returncode != 0, f"{host} has the backup timer"
    assert on(DB, "systemctl is-enabled shipshape-backup.timer").stdout.strip() == "enabled"
    backup = on(DB, "systemctl start shipshape-backup.service && cat /var/backups/example/status.json")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    assert json.loads(backup.stdout)["last_success"]


def test_restore_without_the_confirmation_is_refused_and_changes_nothing():
    db_container = database_containers(DB)
    rows = notes()
    run = testlib.run_playbook(PLAYBOOKS / "restore.yml", None, timeout=300)
    assert run.returncode != 0
    assert "run again with -e confirm_restore=example" in run.stdout, run.stdout[-3000:]
    assert "Nothing was changed" in run.stdout
    assert testlib.recap(run.stdout)[DB]["changed"] == 0
    assert database_containers(DB) == db_container and notes() == rows


def app_started_at(host: str) -> list:
    """When each running container of the app (Compose projects example-a, example-b) on host last started."""
    out = on(host, "docker inspect -f '{{.State.StartedAt}}' "
                   "$(docker ps -q --filter label=com.docker.compose.project=example-a) "
                   "$(docker ps -q --filter label=com.docker.compose.project=example-b)")
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    return out.stdout.split()


def test_restore_runs_on_the_database_host_with_the_app_stopped_on_every_web_host():
    """The backup of the test above holds the notes so far; a note written after it is gone
    once that backup is restored. The app is stopped on both web hosts around the restore."""
    before = notes()
    status, body = https(address(BALANCER), "/api/notes", "-X", "POST", "-H", f"X-Api-Token: {API_TOKEN}",
                         "-H", "Content-Type: application/json",
                         "--data", json.dumps({"title": "written after the backup", "body": "restored away"}))
    assert status == 201, body
    started = {host: app_started_at(host) for host in (WEB1, WEB2)}
    safety_before = on(DB, f"ls {SAFETY_DUMPS}").stdout.split()

    run = testlib.run_playbook(PLAYBOOKS / "restore.yml", {"confirm_restore": "example"}, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:]
    for host in (WEB1, WEB2):
        # A delegated result reads "changed: [multi-db -> multi-web1(ADDRESS)] => (item=multi-web1)".
        assert re.search(rf"changed: \[{DB} -> {host}[(\]]", played(run, "Restore from a backup")), run.stdout[-4000:]
        assert app_started_at(host) != started[host], f"the app on {host} was not stopped and started again"
    assert f"the app is healthy on {WEB1}, {WEB2}." in " ".join(run.stdout.split())
    assert sorted(note["title"] for note in notes()) == sorted(note["title"] for note in before)
    assert len(on(DB, f"ls {SAFETY_DUMPS}").stdout.split()) > len(safety_before), "no safety dump"
    assert_serves(commit_of("v1"))


# ------------------------------------------------------------------ rolling deploys

def test_a_rolling_deploy_with_a_migration_has_no_failed_request():
    v1, v3 = commit_of("v1"), commit_of("v3")
    before = len(notes())
    dumps_before = len(dumps(DB))
    workers = {host: watch_workers(host) for host in (WEB1, WEB2)}
    with under_load("rolling-deploy") as load:
        run = deploy("v3")
    assert run.returncode == 0, run.stdout[-4000:]
    assert_no_failed_request(load, v1, v3)
    assert_host_by_host(played(run, "Deploy the app"))
    # On each host v3 started in the idle slot beside v1 and took the traffic once healthy.
    out = played(run, "Deploy the app")
    assert out.count("TASK [app : Start the release in the slot and wait until its containers are healthy]") == 2
    assert out.count("TASK [app : Switch the traffic to the new slot]") == 2
    for host in (WEB1, WEB2):
        release, last = current_release(host), ledger(host)[-1]
        assert release["commit"] == v3 and release["image"].endswith(f":{v3}"), release
        assert (last["kind"], last["result"], last["commit"], last["release"]) == ("deploy", "success", v3, release["id"])
        assert last["deployed_by"] and last["image_id"].startswith("sha256:"), last
        assert last["slot"] == assert_at_rest(host), last
        # The old slot still holds v1's containers, stopped, for a rollback.
        old = "b" if last["slot"] == "a" else "a"
        assert slot_containers(host, old) == [("web", "exited"), ("worker", "exited")], slot_containers(host, old)
        assert Path(on(host, f"readlink {APP_ROOT}/slots/{old}").stdout.strip()).name == last["previous"], last
    assert_serves(v3)
    # The migration ran once, in the first host's turn, after a dump on the database host.
    assert hook_results(ledger(WEB1)[-1])["migrate"] == "ok", ledger(WEB1)[-1]["hooks"]
    assert hook_results(ledger(WEB2)[-1])["migrate"] == "skipped (nothing to do)", ledger(WEB2)[-1]["hooks"]
    assert len(dumps(DB)) == dumps_before + 1
    for host in (WEB1, WEB2):
        assert worker_overlaps(host, workers[host]) == [], f"{host}: the worker ran twice"
    assert dumps(WEB1) == [] and dumps(WEB2) == []
    assert len(notes()) == before


def test_a_host_that_fails_its_health_gate_stops_the_rollout():
    v3, bad = commit_of("v3"), commit_of("unhealthy")
    web2_ledger = ledger(WEB2)
    web1_releases = releases(WEB1)
    web1_slot = live_slot(WEB1)
    with under_load("refused-release") as load:
        run = deploy("unhealthy")
    assert run.returncode != 0, run.stdout[-4000:]
    assert "failed its health gate" in run.stdout and "The traffic stays on" in run.stdout, run.stdout[-4000:]
    assert_no_failed_request(load, v3, v3)
    assert set(load.summary["versions"]) == {v3}, load.summary["versions"]
    # The first host refused the release and kept serving v3 from its live slot: the release's
    # containers and directory are gone. The second host was never touched.
    last = ledger(WEB1)[-1]
    assert (last["result"], last["commit"]) == ("failed", bad) and "health gate" in last["failure"], last
    assert releases(WEB1) == web1_releases
    assert assert_at_rest(WEB1) == web1_slot
    assert bad not in on(WEB1, "docker ps -a --format '{{.Image}}'").stdout, "a container of the refused release is left"
    assert current_commit(WEB1) == v3 and current_commit(WEB2) == v3
    assert result_lines(played(run, "Deploy the app"), WEB2) == [], "the rollout went on to the second host"
    assert ledger(WEB2) == web2_ledger
    assert_serves(v3)


def test_a_rollback_reads_the_schema_on_the_database_host_and_rolls_host_by_host():
    v1, v3 = commit_of("v1"), commit_of("v3")
    # v1 (the release before v3 on both hosts) does not know v3's migration, which the
    # database host has applied: refused on the first host (its ledger records the refusal),
    # nothing changes anywhere.
    web2_ledger = ledger(WEB2)
    refused = testlib.run_playbook(PLAYBOOKS / "rollback.yml", timeout=600)
    assert refused.returncode != 0
    assert "does not know 1 migration(s) the database has applied: notes.0002_note_pinned" in refused.stdout
    assert current_commit(WEB1) == v3 and current_commit(WEB2) == v3
    assert result_lines(played(refused, "Roll the app back"), WEB2) == [], "the refused rollback went on to the second host"
    last = ledger(WEB1)[-1]
    assert (last["kind"], last["result"]) == ("rollback", "failed") and "notes.0002_note_pinned" in last["failure"], last
    assert ledger(WEB2) == web2_ledger
    # Forced (the new column is additive, v1 ignores it): one host after the other, under load,
    # without a rebuild or a hook. Each host starts v1 in its idle slot (web2's still holds v1's
    # stopped containers; web1's were removed with the refused release, so v1 is recreated
    # there from its directory and recorded image), switches the traffic, then stops v3's slot.
    before = {host: current_release(host)["id"] for host in (WEB1, WEB2)}
    slots_before = {host: live_slot(host) for host in (WEB1, WEB2)}
    workers = {host: watch_workers(host) for host in (WEB1, WEB2)}
    with under_load("rollback") as load:
        start = time.monotonic()
        forced = testlib.run_playbook(PLAYBOOKS / "rollback.yml", {"app_rollback_force": True}, timeout=900)
        took = time.monotonic() - start
    assert forced.returncode == 0, forced.stdout[-4000:]
    assert_no_failed_request(load, v3, v1)
    out = played(forced, "Roll the app back")
    assert_host_by_host(out)
    switched = load.summary["first_seen"][v1]
    print(f"rollback.yml took {took:.1f} s; the first host answered with v1 after {switched:.1f} s")
    assert switched < took / 2, (switched, took)
    turns = out.split("PLAY [Roll the app back]")[1:]
    assert len(turns) == 2, "expected one batch per web host"
    for turn in turns:
        assert "WARNING: rolling back to" in turn, "the forced rollback did not warn about the newer schema"
        switch = turn.index("TASK [app : Switch the traffic to the new slot]")
        assert switch < turn.index("TASK [app : Stop the old slot (its containers are kept for a rollback)]")
        assert "Build the app image" not in turn, "a rollback rebuilt the image"
        assert "TASK [app : Run the hook" not in turn, "a rollback ran a hook"
    for host in (WEB1, WEB2):
        release, last = current_release(host), ledger(host)[-1]
        assert release["commit"] == v1 and release["id"] < before[host]
        assert (last["kind"], last["result"], last["commit"], last["hooks"]) == ("rollback", "success", v1, []), last
        live = assert_at_rest(host)
        assert live != slots_before[host] and last["slot"] == live, (live, slots_before[host], last)
        # v1 runs its recorded image: nothing was rebuilt.
        image = on(host, f"docker inspect -f '{{{{.Image}}}}' {SLOTS[live][0]}-web-1").stdout.strip()
        assert image == release["image_id"], (image, release)
    # The worker (app_once_services) stopped in v3's slot before it started in v1's, on both
    # hosts: on web1 v1's slot was recreated, on web2 its stopped containers started again.
    for host in (WEB1, WEB2):
        assert worker_overlaps(host, workers[host]) == [], f"{host}: the worker ran twice"
