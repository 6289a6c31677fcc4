"""The backups role backs the example app up for real, restores it, and fails loudly.

Runs after converge and idempotence. The tests build on each other in file order:
rows -> backup by the timer's service -> the database volume wiped -> restore -> rows back
-> restore drill -> old backups seeded, retention -> database down, the failure path ->
free-space guard -> restic snapshots, check, forget with the retention policy, fetch -> an
unconfirmed restore is refused.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import testlib  # noqa: E402

testinfra_hosts = ["ansible://backups-debian13"]

APP = "example"
DIR = f"/var/backups/{APP}"
SCRIPT = "/usr/local/sbin/shipshape-backup"
PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"
SECRETS = yaml.safe_load((Path(__file__).resolve().parents[1] / "group_vars/web/secrets.yml").read_text())
SETTINGS = yaml.safe_load((Path(__file__).resolve().parents[1] / "group_vars/web/main.yml").read_text())
DB_VOLUME = "example-data_db-data"
# The app's two slots (Compose projects); the only deploy (prepare) went to slot a, which
# serves on 127.0.0.1:8000 (slot b would on 8001).
SLOTS = ("example-a", "example-b")
APP_URL = "http://127.0.0.1:8000"
MEDIA_VOLUME = "example_media"
ALERT_LOG = "/var/log/shipshape-backup-alerts.log"
EVENTS_LOG = "/tmp/restore-events.jsonl"
RESTIC = ("TZ=UTC RESTIC_PASSWORD_FILE=/etc/shipshape/restic-password "
          f"restic -r {SETTINGS['backups_restic_repository']} --no-cache")

# A stand-in for a chat or paging webhook: records the JSON bodies it receives.
WEBHOOK = r'''
import http.server, time
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open("/tmp/webhook.bodies", "ab") as out:
            out.write(body + b"\n")
        with open("/tmp/webhook.paths", "a") as out:
            out.write(self.path + "\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 9911), Hook)
server.timeout = 5
end = time.time() + 600
while time.time() < end:
    server.handle_request()
'''


# ------------------------------------------------------------------ helpers

def sh(host, cmd: str):
    out = host.run(cmd)
    assert out.rc == 0, f"{cmd}: {out.stderr[-2000:]}"
    return out.stdout


def api(host, path: str = "/api/notes", data: dict | None = None):
    extra = ""
    if data is not None:
        token = SECRETS["app_env_secrets"]["API_TOKEN"]
        extra = (f"-H 'X-Api-Token: {token}' -H 'Content-Type: application/json' "
                 f"-d '{json.dumps(data)}'")
    return json.loads(sh(host, f"curl -sf --max-time 10 -H 'Host: localhost' {extra} {APP_URL}{path}"))


def digest(rows: list) -> str:
    content = sorted((r["id"], r["title"], r["body"], r["created"]) for r in rows)
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


def health(host) -> dict:
    out = host.run(f"curl -s --max-time 10 -H 'Host: localhost' {APP_URL}/health")
    return json.loads(out.stdout) if out.rc == 0 and out.stdout.startswith("{") else {}


def status(host) -> dict:
    return json.loads(sh(host, f"cat {DIR}/status.json"))


def listing(host, directory: str = DIR) -> dict:
    """{name: sha256} of the files in a directory (not the lock and status files)."""
    out = sh(host, f"cd {directory} && find . -maxdepth 1 -type f ! -name .lock ! -name status.json "
                   "-printf '%f\\n' | sort | xargs -r sha256sum")
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def media_digest(host) -> str:
    mount = sh(host, f"docker volume inspect -f '{{{{.Mountpoint}}}}' {MEDIA_VOLUME}").strip()
    return sh(host, f"cd {mount} && find . -type f -printf '%p %U %m ' -exec sha256sum {{}} \\; | sort")


def containers(host) -> str:
    return sh(host, "docker ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.Status}}' "
                    "| sed -E 's/Up [^(]*/Up/' | sort")


def db_container(host) -> str:
    return sh(host, "docker ps -q --filter label=com.docker.compose.project=example-data "
                    "--filter label=com.docker.compose.service=db").strip()


def web_containers(host) -> set:
    """Full ids of the app's running web containers (of either slot)."""
    return {cid for slot in SLOTS
            for cid in sh(host, f"docker ps -q --no-trunc --filter label=com.docker.compose.project={slot} "
                                "--filter label=com.docker.compose.service=web").split()}


def epoch(text: str) -> int:
    """Seconds since the epoch of a set stamp (20250314T023012Z) or an ISO time (2025-03-14T02:30:12Z)."""
    fmt = "%Y%m%dT%H%M%SZ" if "-" not in text else "%Y-%m-%dT%H:%M:%SZ"
    return int(dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc).timestamp())


def wait_db_healthy(host) -> None:
    sh(host, "for i in $(seq 90); do "
             "[ \"$(docker inspect -f '{{.State.Health.Status}}' example-data-db-1)\" = healthy ] && exit 0; "
             "sleep 1; done; exit 1")


def playbook(name: str, extra: dict | None = None):
    return testlib.run_playbook(PLAYBOOKS / name, extra)


def stamp_days_ago(days: int, hour: int = 1) -> str:
    moment = dt.datetime.now(dt.timezone.utc).replace(hour=hour, minute=0, second=0, microsecond=0)
    return (moment - dt.timedelta(days=days)).strftime("%Y%m%dT%H%M%SZ")


def policy(stamps: list, daily: int, weekly: int, monthly: int) -> set:
    """keep-daily/weekly/monthly as restic defines it (the newest of each of the last N periods)."""
    times = sorted((dt.datetime.strptime(s, "%Y%m%dT%H%M%SZ") for s in stamps), reverse=True)
    kept = {times[0]}
    for count, period in ((daily, lambda t: t.date()), (weekly, lambda t: t.isocalendar()[:2]),
                          (monthly, lambda t: (t.year, t.month))):
        periods = []
        for moment in times:
            if period(moment) not in periods and len(periods) < count:
                periods.append(period(moment))
                kept.add(moment)
    return {t.strftime("%Y%m%dT%H%M%SZ") for t in kept}


def snapshot_stamp(snapshot: dict) -> str:
    """A restic snapshot's time as a set stamp, in UTC (restic may print nanoseconds and an offset)."""
    text = re.sub(r"\.\d+", "", snapshot["time"]).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def snapshots(host) -> list:
    return json.loads(sh(host, f"{RESTIC} snapshots --json"))


def set_stamps(names) -> set:
    return {n[len(APP) + 1:len(APP) + 17] for n in names if n.startswith(f"{APP}-")}


# ------------------------------------------------------------------ the installed role

def test_bad_state_was_fixed_backup_directory_is_private(host):
    backups = host.file(DIR)
    assert backups.user == "root"
    assert backups.mode == 0o700


def test_settings_and_secrets_are_private(host):
    for path in ("/etc/shipshape", "/etc/shipshape/backup.json", "/etc/shipshape/backup-secrets.json",
                 "/etc/shipshape/restic-password"):
        f = host.file(path)
        assert f.user == "root"
        assert f.mode in (0o600, 0o700), path
    assert host.file(SCRIPT).mode == 0o755


def test_timers_are_persistent_and_scheduled_from_the_variables(host):
    timer = sh(host, "systemctl show shipshape-backup.timer -p Persistent -p TimersCalendar "
                     "-p ActiveState -p UnitFileState")
    assert "Persistent=yes" in timer
    assert "ActiveState=active" in timer
    assert "UnitFileState=enabled" in timer
    assert "OnCalendar=*-*-* 03:17:00" in timer
    check = sh(host, "systemctl show shipshape-backup-check.timer -p Persistent -p ActiveState")
    assert "Persistent=yes" in check
    assert "ActiveState=active" in check


def test_the_deploy_made_a_first_backup(host):
    st = status(host)
    assert st["last_success"] and host.file(st["last_file"]).exists
    assert st["last_offsite_snapshot"]


# ------------------------------------------------------------------ backup, wipe, restore

@pytest.fixture(scope="module")
def backed_up(host):
    for i in range(5):
        api(host, data={"title": f"note {i}", "body": f"kept by the backup {i} \u00e9\u00e8"})
    rows = api(host)
    assert len(rows) >= 5
    before = media_digest(host)
    out = host.run("systemctl start shipshape-backup.service")
    assert out.rc == 0, out.stderr
    return {"rows": rows, "media": before, "status": status(host)}


def test_the_timer_service_makes_a_verified_backup(host, backed_up):
    st = backed_up["status"]
    assert "ActiveState=inactive" in sh(host, "systemctl show shipshape-backup.service -p ActiveState")
    assert "Result=success" in sh(host, "systemctl show shipshape-backup.service -p Result")
    assert st["last_success"].endswith("Z")
    dt.datetime.strptime(st["last_success"], "%Y-%m-%dT%H:%M:%SZ")
    dump = host.file(st["last_file"])
    assert dump.exists and dump.user == "root" and dump.mode == 0o600
    assert dump.size == st["last_size"] > 0
    assert st["last_file"].endswith(".dump")
    names = [Path(p).name for p in st["last_files"]]
    assert any(n.endswith(f".media-{MEDIA_VOLUME}.tar.gz") for n in names)
    for name in names:
        assert host.file(f"{DIR}/{name}.sha256").mode == 0o600
    sh(host, f"cd {DIR} && sha256sum -c --quiet " + " ".join(f"{n}.sha256" for n in names))
    # The partial file planted in prepare (an interrupted run) is gone.
    assert not host.run(f"ls {DIR}/*.partial").stdout.strip()


def test_a_wiped_database_volume_comes_back_with_its_rows(host, backed_up):
    api(host, data={"title": "after the backup", "body": "lost with the volume"})
    writers = web_containers(host)
    assert writers
    # The disaster: the database container and its volume are gone, the media files too.
    sh(host, "docker rm -f example-data-db-1 && docker volume rm example-data_db-data")
    mount = sh(host, f"docker volume inspect -f '{{{{.Mountpoint}}}}' {MEDIA_VOLUME}").strip()
    sh(host, f"rm -rf {mount}/uploads")
    assert health(host).get("status") != "ok"

    # Docker's own record of the web containers' stops and starts during the restore, from a
    # listener on the host (the daemon keeps only its last 256 events).
    since = sh(host, "date +%s").strip()
    sh(host, f"systemctl stop test-restore-events 2>/dev/null; rm -f {EVENTS_LOG} && "
             f"systemd-run --unit=test-restore-events --collect -p StandardOutput=file:{EVENTS_LOG} "
             f"docker events --since {since} --filter type=container "
             "--filter label=com.docker.compose.service=web "
             "--filter event=stop --filter event=start --format '{{json .}}'")
    try:
        run = playbook("restore.yml", {"confirm_restore": APP})
    finally:
        host.run("sleep 1; systemctl stop test-restore-events")
    assert run.returncode == 0, run.stdout[-5000:]
    assert f"Restored {backed_up['status']['last_set']}" in run.stdout

    # Every web container was stopped before the safety dump started, none started again
    # until the restore had finished, and the ones serving now were started after it.
    # Docker ANDs label filters, so the listener took every web service: keep the app's slots.
    events = [e for e in (json.loads(line) for line in sh(host, f"cat {EVENTS_LOG}").splitlines() if line.strip())
              if e["Actor"]["Attributes"].get("com.docker.compose.project") in SLOTS]
    stops = [e for e in events if e["Action"] == "stop"]
    assert writers <= {e["Actor"]["ID"] for e in stops}, events
    # Only the serving slot's web container was stopped and started: slot a, the only deploy's.
    assert {e["Actor"]["Attributes"]["name"] for e in events} == {"example-a-web-1"}, events
    safety_started = epoch(max(set_stamps(listing(host, f"{DIR}/safety"))))
    restored = epoch(status(host)["last_restore"])
    assert max(e["timeNano"] for e in stops) // 10**9 <= safety_started
    first_stop = min(e["timeNano"] for e in stops)
    starts = [e for e in events if e["Action"] == "start" and e["timeNano"] > first_stop]
    assert starts and all(e["time"] >= restored for e in starts), events
    serving = web_containers(host)
    assert serving and serving <= {e["Actor"]["ID"] for e in starts}

    rows = api(host)
    assert len(rows) == len(backed_up["rows"])
    assert digest(rows) == digest(backed_up["rows"])
    assert media_digest(host) == backed_up["media"]
    assert health(host)["status"] == "ok"
    safety = host.run(f"ls {DIR}/safety").stdout.split()
    assert any(n.endswith(".dump") for n in safety) and any(n.endswith(".sha256") for n in safety)
    assert host.file(f"{DIR}/safety").mode == 0o700
    assert status(host)["last_restore_set"] == backed_up["status"]["last_set"]


def test_the_restore_drill_proves_the_backup_and_records_it(host, backed_up):
    # A row the live database has and the backup has not: the drill must count the backup's.
    api(host, data={"title": "after the restore", "body": "only in the live database"})
    live = api(host)
    assert len(live) == len(backed_up["rows"]) + 1
    before = containers(host)
    old_status = status(host)
    run = playbook("verify-backups.yml")
    assert run.returncode == 0, run.stdout[-5000:]
    st = status(host)
    assert st["last_verified"] >= old_status["last_success"]
    assert st["last_verified_set"] == old_status["last_set"]
    assert st["last_verified_results"]["notes"] == len(backed_up["rows"])
    assert st["last_verified_results"]["users"] >= 1
    # The other keys stay; the scratch container is gone; the app and its data were not touched.
    for key in ("last_success", "last_file", "last_size"):
        assert st[key] == old_status[key]
    assert not sh(host, "docker ps -aq --filter label=shipshape.restore-drill").strip()
    assert not sh(host, f"docker ps -aq --filter 'name=^/{APP}-restore-drill$'").strip()
    assert containers(host) == before
    assert digest(api(host)) == digest(live)


# ------------------------------------------------------------------ retention

def test_after_a_run_only_the_policy_set_of_old_backups_remains(host):
    seeded = [stamp_days_ago(d) for d in (1, 2, 3, 4, 5, 6, 8, 10, 13, 17, 20, 27, 34, 41, 45, 60, 75,
                                          90, 120, 150, 200, 400)]
    for stamp in seeded:
        name = f"{APP}-{stamp}.dump"
        sh(host, f"cd {DIR} && printf 'PGDMP seeded {stamp}' > {name} && sha256sum {name} > {name}.sha256 "
                 f"&& chmod 0600 {name} {name}.sha256")
    sh(host, f"echo 'not a backup' > {DIR}/notes-by-the-admin.txt")
    before = set_stamps(listing(host))
    run = playbook("backup.yml")
    assert run.returncode == 0, run.stdout[-5000:]
    new = status(host)["last_set"][len(APP) + 1:]
    assert "Backup " + status(host)["last_set"] in run.stdout
    remaining = listing(host)
    expected = policy(sorted(before | {new}), SETTINGS["backups_keep_daily"],
                      SETTINGS["backups_keep_weekly"], SETTINGS["backups_keep_monthly"])
    assert set_stamps(remaining) == expected
    assert len(expected) <= 1 + 3 + 2 + 2
    assert seeded[0] in expected and seeded[-1] not in expected
    assert "notes-by-the-admin.txt" in remaining
    # Every remaining set is complete: each file has its checksum.
    data = [n for n in remaining if n.startswith(f"{APP}-") and not n.endswith(".sha256")]
    assert all(f"{n}.sha256" in remaining for n in data)


def test_a_failed_restore_leaves_the_data_as_it_was_and_the_app_serving(host):
    # A seeded set that retention kept: its "dump" is not a real archive, so pg_restore fails.
    broken = f"{APP}-{stamp_days_ago(1)}"
    rows = api(host)
    run = playbook("restore.yml", {"confirm_restore": APP, "backups_restore_name": broken})
    assert run.returncode != 0
    assert f"The restore of {broken} failed" in run.stdout
    assert "safety dump taken before it: /var/backups/example/safety/" in run.stdout
    assert digest(api(host)) == digest(rows)
    assert health(host)["status"] == "ok"


# ------------------------------------------------------------------ failures

@pytest.fixture()
def webhook(host):
    script = base64.b64encode(WEBHOOK.encode()).decode()
    sh(host, f"echo {script} | base64 -d > /tmp/webhook.py && rm -f /tmp/webhook.bodies /tmp/webhook.paths && "
             "systemd-run --unit=test-webhook --collect python3 /tmp/webhook.py && "
             "for i in $(seq 20); do ss -ltn | grep -q 127.0.0.1:9911 && exit 0; sleep 0.5; done; exit 1")
    yield
    host.run("systemctl stop test-webhook")


def test_an_unreachable_database_fails_alerts_and_keeps_older_backups(host, webhook):
    before = listing(host)
    old_status = status(host)
    alerts_before = host.run(f"cat {ALERT_LOG}").stdout
    sh(host, "docker stop example-data-db-1")
    try:
        out = host.run("systemctl start shipshape-backup.service")
        assert out.rc != 0
        assert "Result=exit-code" in sh(host, "systemctl show shipshape-backup.service -p Result")
        journal = sh(host, "journalctl -u shipshape-backup.service -n 20 --no-pager -o cat")
        assert "is not running" in journal
        run = playbook("backup.yml")
        assert run.returncode != 0
        assert "The backup of example failed" in run.stdout
        assert "is not running" in run.stdout
    finally:
        sh(host, "docker start example-data-db-1")
        wait_db_healthy(host)
    alerts = host.run(f"cat {ALERT_LOG}").stdout[len(alerts_before):].splitlines()
    assert len(alerts) == 2
    assert all(a.startswith("backup-failed|example|") and "is not running" in a for a in alerts)
    bodies = [json.loads(line) for line in host.file("/tmp/webhook.bodies").content_string.splitlines()]
    assert [b["event"] for b in bodies] == ["backup-failed", "backup-failed"]
    assert all(b["app"] == APP and "is not running" in b["message"] for b in bodies)
    assert host.run("grep -c '^/hook/' /tmp/webhook.paths").stdout.strip() == "2"
    # No partial file, the older backups untouched, the last success kept, the failure recorded.
    assert not host.run(f"ls -a {DIR} | grep -E 'partial|fetch'").stdout.strip()
    assert listing(host) == before
    st = status(host)
    assert st["last_success"] == old_status["last_success"]
    assert "is not running" in st["last_error"]
    assert st["last_failure"] >= old_status["last_success"]


def test_the_free_space_guard_refuses_to_start(host):
    before = listing(host)
    config = json.loads(sh(host, "cat /etc/shipshape/backup.json"))
    config["min_free_mb"] = 1 << 40
    encoded = base64.b64encode(json.dumps(config).encode()).decode()
    sh(host, f"umask 077 && echo {encoded} | base64 -d > /tmp/guard.json")
    out = host.run(f"{SCRIPT} --config /tmp/guard.json run")
    assert out.rc == 1
    assert "below the threshold" in out.stderr and "backups_min_free_mb" in out.stderr
    assert listing(host) == before
    assert "below the threshold" in host.run(f"tail -n 1 {ALERT_LOG}").stdout


# ------------------------------------------------------------------ off-site copies

def test_restic_holds_snapshots_and_its_check_passes(host):
    held = snapshots(host)
    assert held
    assert all(s.get("tags") == [f"shipshape-{APP}"] for s in held)
    latest = max(held, key=snapshot_stamp)
    st = status(host)
    assert latest["id"].startswith(st["last_offsite_snapshot"])
    assert snapshot_stamp(latest) == st["last_set"][len(APP) + 1:]
    assert any(p.endswith(st["last_file"]) for p in latest["paths"])
    # The deploy, the timer's service and the retention test each made a copy. After each, forget
    # --prune ran with the policy: asked again, restic finds nothing more to remove. (With fewer
    # days of snapshots than keep-daily, restic also keeps the oldest one; the next test fills
    # the policy and checks the exact set.)
    hostname = sh(host, "hostname").strip()
    keep = [f"--keep-{rule} {SETTINGS[f'backups_keep_{rule}']}" for rule in ("daily", "weekly", "monthly")]
    plan = json.loads(sh(host, f"{RESTIC} forget --dry-run --json --host {hostname} --tag shipshape-{APP} "
                               f"--group-by host,tags {' '.join(keep)}"))
    assert plan and all(group["remove"] in (None, []) for group in plan), plan
    assert {s["id"] for group in plan for s in group["keep"]} == {s["id"] for s in held}
    out = host.run("systemctl start shipshape-backup-check.service")
    assert out.rc == 0, out.stderr
    assert "Result=success" in sh(host, "systemctl show shipshape-backup-check.service -p Result")
    assert "last_check" in status(host)
    sh(host, f"{RESTIC} check")


def test_restic_forget_keeps_exactly_the_policy_set_of_this_hosts_snapshots(host):
    hostname = sh(host, "hostname").strip()
    tag = f"shipshape-{APP}"
    before = snapshots(host)
    taken = {snapshot_stamp(s) for s in before}
    now = dt.datetime.fromtimestamp(int(sh(host, "date +%s")), dt.timezone.utc)

    def moment(days: int, hour: int | None = None, seconds: int = 0) -> dt.datetime:
        day = now - dt.timedelta(days=days, seconds=seconds)
        return day if hour is None else day.replace(hour=hour, minute=0, second=0)

    # Older snapshots of this host and tag for forget to sort out: two earlier today, two
    # yesterday, then days, weeks and months back.
    ours = [moment(0, seconds=150), moment(0, seconds=90), moment(1, 1), moment(1, 5),
            *(moment(d, 1) for d in (2, 3, 4, 6, 9, 15, 35, 65, 100, 400))]
    ours = [t for t in ours if t.strftime("%Y%m%dT%H%M%SZ") not in taken]
    # Snapshots the policy of this host and tag must leave alone: another server's, and another
    # tag's on this server, two on one day each (forget would keep only one of each pair).
    foreign = [("other-server", tag, moment(10, 1)), ("other-server", tag, moment(10, 2)),
               (hostname, "other-app", moment(10, 1)), (hostname, "other-app", moment(10, 2))]
    commands = ["rm -rf /tmp/restic-seed && mkdir /tmp/restic-seed"]
    for i, (name, label, when) in enumerate([*((hostname, tag, t) for t in ours), *foreign]):
        path = f"/tmp/restic-seed/seed-{i}-{when:%Y%m%dT%H%M%SZ}.txt"
        commands.append(f"echo {i} > {path} && {RESTIC} backup --quiet --host {name} --tag {label} "
                        f"--time '{when:%Y-%m-%d %H:%M:%S}' {path}")
    sh(host, " && ".join(commands))
    seeded = snapshots(host)
    foreign_ids = {s["id"] for s in seeded if s["hostname"] != hostname or s.get("tags") != [tag]}
    assert len(foreign_ids) == len(foreign)
    mine = {snapshot_stamp(s) for s in seeded if s["id"] not in foreign_ids}
    assert mine == taken | {t.strftime("%Y%m%dT%H%M%SZ") for t in ours}

    out = host.run("systemctl start shipshape-backup.service")
    assert out.rc == 0, out.stderr
    st = status(host)
    new = st["last_set"][len(APP) + 1:]
    assert new not in mine
    expected = policy(sorted(mine | {new}), SETTINGS["backups_keep_daily"],
                      SETTINGS["backups_keep_weekly"], SETTINGS["backups_keep_monthly"])
    # The policy has something to remove: the older of today's and of yesterday's, and the oldest.
    assert moment(400, 1).strftime("%Y%m%dT%H%M%SZ") not in expected and len(expected) < len(mine)

    after = snapshots(host)
    left = {snapshot_stamp(s) for s in after if s["id"] not in foreign_ids}
    assert left == expected
    assert all(s["hostname"] == hostname and s.get("tags") == [tag]
               for s in after if s["id"] not in foreign_ids)
    assert foreign_ids <= {s["id"] for s in after}
    newest = max((s for s in after if s["id"] not in foreign_ids), key=snapshot_stamp)
    assert snapshot_stamp(newest) == new and newest["id"].startswith(st["last_offsite_snapshot"])
    # The pruned repository is consistent.
    sh(host, f"{RESTIC} check && rm -rf /tmp/restic-seed")


def test_a_lost_local_backup_comes_back_from_restic(host):
    st = status(host)
    names = [Path(p).name for p in st["last_files"]]
    sums = listing(host)
    sh(host, f"cd {DIR} && rm -f " + " ".join(f"{n} {n}.sha256" for n in names))
    sh(host, f"{SCRIPT} fetch latest")
    after = listing(host)
    for name in names:
        assert after[name] == sums[name]
        assert host.file(f"{DIR}/{name}").mode == 0o600


# ------------------------------------------------------------------ bad input

def installed(host) -> str:
    return sh(host, "sha256sum /etc/shipshape/* /etc/systemd/system/shipshape-backup* /usr/local/sbin/shipshape-backup")


@pytest.mark.parametrize("extra, named", [
    ({"backups_on_calendar": "every other tuesday"}, "backups_on_calendar"),
    ({"backups_keep_daily": 0}, "backups_keep_daily"),
    ({"backups_restic_password": ""}, "backups_restic_password"),
], ids=["calendar", "retention", "restic-password"])
def test_bad_settings_stop_the_role_before_anything_changes(host, extra, named):
    before = installed(host)
    run = testlib.run_playbook("converge.yml", extra)
    assert run.returncode != 0
    assert named in run.stdout
    assert testlib.recap(run.stdout)["backups-debian13"]["changed"] == 0
    assert installed(host) == before


# ------------------------------------------------------------------ refused restores

def state(host) -> dict:
    return {"containers": containers(host), "rows": digest(api(host)), "backups": listing(host),
            "safety": listing(host, f"{DIR}/safety"), "media": media_digest(host),
            "status": sh(host, f"sha256sum {DIR}/status.json")}


@pytest.mark.parametrize("extra", [None, {"confirm_restore": "yes"}], ids=["missing", "wrong"])
def test_a_restore_without_the_confirmation_is_refused_and_touches_nothing(host, extra):
    before = state(host)
    run = playbook("restore.yml", extra)
    assert run.returncode != 0
    assert "confirm_restore=example" in run.stdout
    assert "Nothing was changed" in run.stdout
    assert testlib.recap(run.stdout)["backups-debian13"]["changed"] == 0
    assert state(host) == before


def test_no_secret_in_the_output_of_the_test_runs():
    log = (Path(os.environ["MOLECULE_PROJECT_DIRECTORY"]) / ".cache/molecule/backups.runs.log").read_text()
    values = [*SECRETS["app_env_secrets"].values(), SECRETS["backups_restic_password"],
              SECRETS["backups_alert_webhook"], *SECRETS["backups_restic_env"].values()]
    for value in values:
        assert value not in log, "a secret value appears in the output"
