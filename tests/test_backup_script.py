"""Unit tests of the backup script the backups role installs (roles/backups/files/shipshape-backup.py).

The Molecule scenario `backups` runs it for real against PostgreSQL, Docker and restic; these
tests pin down its logic without them: the retention policy, atomic writes, the free-space
guard, the alert hooks and the status file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import importlib.machinery
import importlib.util
import json
import os
import socket
import threading
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "roles/backups/files/shipshape-backup.py"


def load():
    loader = importlib.machinery.SourceFileLoader("shipshape_backup", str(SCRIPT))
    spec = importlib.util.spec_from_loader("shipshape_backup", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


sb = load()


def stamp(text: str) -> str:
    return dt.datetime.fromisoformat(text).strftime("%Y%m%dT%H%M%SZ")


@pytest.fixture()
def cfg(tmp_path):
    backups = tmp_path / "backups"
    config = {
        "app": "demo-app", "dir": str(backups), "secrets_file": str(tmp_path / "secrets.json"),
        "db": {"enabled": True, "project": "demo-app-data", "service": "db"},
        "media_volumes": [], "keep": {"daily": 3, "weekly": 2, "monthly": 2},
        "min_free_mb": 0, "alert_command": f"echo \"$SHIPSHAPE_BACKUP_EVENT $SHIPSHAPE_BACKUP_MESSAGE\" >> {tmp_path}/alerts",
        "restic": {"enabled": False}, "lock_timeout": 5,
        "metrics_file": str(tmp_path / "node-exporter" / "shipshape_backup_demo-app.prom"),
    }
    path = tmp_path / "backup.json"
    path.write_text(json.dumps(config))
    (tmp_path / "secrets.json").write_text(json.dumps({}))
    return path


def seed(directory: Path, app: str, stamps: list, sums: bool = True) -> None:
    directory.mkdir(mode=0o700, exist_ok=True)
    for s in stamps:
        data = directory / f"{app}-{s}.dump"
        data.write_bytes(b"PGDMP " + s.encode())
        if sums:
            (directory / f"{data.name}.sha256").write_text(f"{sb.sha256_of(data)}  {data.name}\n")


def fake_dump(module, body: bytes = b"PGDMP fake dump", seen: list | None = None):
    """A pg_dump stand-in; with seen, it records (target, names in the directory at that moment)."""
    def dump(cfg, target):
        if seen is not None:
            seen.append((Path(target), sorted(p.name for p in Path(target).parent.iterdir())))
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        return hashlib.sha256(body).hexdigest(), len(body)
    return dump


# ------------------------------------------------------------------ retention policy

def test_keep_daily_keeps_the_newest_of_each_of_the_last_days():
    stamps = [stamp("2024-05-10T03:00:00"), stamp("2024-05-10T01:00:00"), stamp("2024-05-09T03:00:00"),
              stamp("2024-05-07T03:00:00"), stamp("2024-05-01T03:00:00")]
    kept = sb.keep_stamps(stamps, daily=3, weekly=0, monthly=0)
    assert kept == {stamp("2024-05-10T03:00:00"), stamp("2024-05-09T03:00:00"), stamp("2024-05-07T03:00:00")}


def test_weekly_and_monthly_rules_count_periods_that_have_backups():
    stamps = [stamp(f"2024-{m:02d}-{d:02d}T02:00:00") for m, d in
              ((6, 3), (5, 29), (5, 27), (5, 20), (5, 2), (4, 15), (3, 1), (1, 9))]
    kept = sb.keep_stamps(stamps, daily=1, weekly=2, monthly=3)
    # daily 1: 06-03; weekly 2: 06-03 (W23), 05-29 (W22); monthly 3: 06-03, 05-29, 04-15.
    assert kept == {stamp("2024-06-03T02:00:00"), stamp("2024-05-29T02:00:00"), stamp("2024-04-15T02:00:00")}


def test_the_newest_backup_is_always_kept():
    stamps = [stamp("2024-05-10T03:00:00"), stamp("2023-01-01T00:00:00")]
    assert sb.keep_stamps(stamps, daily=0, weekly=0, monthly=0) == {stamp("2024-05-10T03:00:00")}


def test_retention_removes_only_sets_outside_the_policy(cfg, tmp_path):
    conf = sb.Config(str(cfg))
    days = [stamp(f"2024-05-{d:02d}T01:00:00") for d in range(1, 21)]
    seed(conf.dir, "demo-app", days)
    seed(conf.dir, "demo-app", [stamp("2024-05-19T05:00:00")], sums=False)  # incomplete: no checksum
    (conf.dir / "README.txt").write_text("not a backup")
    (conf.dir / "other-app-20240501T010000Z.dump").write_text("another app's file")
    removed = sb.apply_retention(conf)
    left = sorted(p.name for p in conf.dir.iterdir())
    # 2024-05-20 is a Monday. daily 3: 20, 19, 18; weekly 2: 20 (W21), 19 (W20, a Sunday);
    # monthly 2: 20 (May) and no older month has a set. The incomplete set counts for nothing.
    kept = {stamp("2024-05-20T01:00:00"), stamp("2024-05-19T01:00:00"), stamp("2024-05-18T01:00:00")}
    assert {n[9:25] for n in left if n.startswith("demo-app-")} == kept
    assert "README.txt" in left and "other-app-20240501T010000Z.dump" in left
    assert f"demo-app-{stamp('2024-05-19T05:00:00')}" in removed
    assert all(f"{n}.sha256" in left for n in left if n.endswith(".dump") and n.startswith("demo-app-"))


# ------------------------------------------------------------------ sets and checksums

def test_only_complete_sets_are_listed_and_found(cfg):
    conf = sb.Config(str(cfg))
    seed(conf.dir, "demo-app", [stamp("2024-05-01T01:00:00"), stamp("2024-05-02T01:00:00")])
    seed(conf.dir, "demo-app", [stamp("2024-05-03T01:00:00")], sums=False)
    sets = sb.complete_sets(conf)
    assert [s["stamp"] for s in sets] == [stamp("2024-05-02T01:00:00"), stamp("2024-05-01T01:00:00")]
    assert sb.find_set(conf, "latest")["stamp"] == stamp("2024-05-02T01:00:00")
    assert sb.find_set(conf, f"demo-app-{stamp('2024-05-01T01:00:00')}")["stamp"] == stamp("2024-05-01T01:00:00")
    with pytest.raises(sb.BackupError, match="no complete backup named"):
        sb.find_set(conf, f"demo-app-{stamp('2024-05-03T01:00:00')}")


def test_a_damaged_file_fails_its_checksum(cfg):
    conf = sb.Config(str(cfg))
    seed(conf.dir, "demo-app", [stamp("2024-05-01T01:00:00")])
    chosen = sb.find_set(conf, "latest")
    chosen["files"][0].write_bytes(b"PGDMP changed")
    with pytest.raises(sb.BackupError, match="does not match its checksum"):
        sb.verify_checksums(chosen["files"])


# ------------------------------------------------------------------ runs

def test_a_good_run_writes_private_files_with_checksums_and_a_status(cfg, monkeypatch):
    monkeypatch.setattr(sb, "dump_database", fake_dump(sb))
    conf = sb.Config(str(cfg))
    conf.dir.mkdir(mode=0o755)
    (conf.dir / "demo-app-20240101T000000Z.dump.partial").write_text("left by a killed run")
    sb.update_status(conf, last_verified="2024-01-01T00:00:00Z")
    assert sb.main(["--config", str(cfg), "run"]) == 0
    files = sorted(p.name for p in conf.dir.iterdir())
    assert not [n for n in files if n.endswith(".partial")]
    dumps = [n for n in files if n.endswith(".dump")]
    assert len(dumps) == 1 and f"{dumps[0]}.sha256" in files
    assert oct(conf.dir.stat().st_mode & 0o777) == "0o700"
    for name in files:
        if name != ".lock":
            assert oct((conf.dir / name).stat().st_mode & 0o777) == "0o600", name
    status = json.loads((conf.dir / "status.json").read_text())
    assert status["last_file"] == str(conf.dir / dumps[0])
    assert status["last_size"] == len(b"PGDMP fake dump")
    assert status["last_verified"] == "2024-01-01T00:00:00Z"  # other keys stay
    dt.datetime.strptime(status["last_success"], "%Y-%m-%dT%H:%M:%SZ")


def test_the_monitoring_reads_when_the_last_backup_succeeded_and_whether_the_last_run_did(cfg, monkeypatch):
    conf = sb.Config(str(cfg))
    conf.dir.mkdir(mode=0o700)
    sb.update_status(conf, last_success="2024-01-01T00:00:00Z")
    assert not conf.metrics_file.exists()  # no node exporter here: no file
    conf.metrics_file.parent.mkdir()
    sb.update_status(conf, last_success="2024-01-01T00:00:00Z")
    text = conf.metrics_file.read_text()
    assert 'shipshape_backup_last_success_timestamp_seconds{app="demo-app"} 1704067200\n' in text
    assert 'shipshape_backup_last_run_success{app="demo-app"} 1\n' in text
    assert oct(conf.metrics_file.stat().st_mode & 0o777) == "0o644"
    sb.update_status(conf, last_failure="2024-01-02T00:00:00Z", last_error="disk full")
    assert 'shipshape_backup_last_run_success{app="demo-app"} 0\n' in conf.metrics_file.read_text()
    monkeypatch.setattr(sb, "dump_database", fake_dump(sb))
    assert sb.main(["--config", str(cfg), "run"]) == 0
    text = conf.metrics_file.read_text()
    assert 'shipshape_backup_last_run_success{app="demo-app"} 1\n' in text
    stamp = float(text.split("shipshape_backup_last_success_timestamp_seconds{app=\"demo-app\"} ")[1].split()[0])
    assert abs(stamp - dt.datetime.now().timestamp()) < 60
    assert not list(conf.metrics_file.parent.glob("*.partial"))


def test_a_failed_dump_leaves_no_partial_file_alerts_and_keeps_older_backups(cfg, tmp_path, monkeypatch):
    conf = sb.Config(str(cfg))
    seed(conf.dir, "demo-app", [stamp("2024-05-01T01:00:00")])
    before = sorted(p.name for p in conf.dir.iterdir())

    def broken(cfg, target):
        target.write_bytes(b"PGDMP half")
        raise sb.BackupError("pg_dump failed (exit 1): connection refused")
    monkeypatch.setattr(sb, "dump_database", broken)
    assert sb.main(["--config", str(cfg), "run"]) == 1
    after = sorted(p.name for p in conf.dir.iterdir() if p.name not in ("status.json", ".lock"))
    assert after == before
    assert "backup-failed pg_dump failed (exit 1): connection refused" in (tmp_path / "alerts").read_text()
    status = json.loads((conf.dir / "status.json").read_text())
    assert "connection refused" in status["last_error"] and "last_success" not in status


def test_retention_runs_only_after_a_good_backup(cfg, monkeypatch):
    conf = sb.Config(str(cfg))
    days = [stamp(f"2024-05-{d:02d}T01:00:00") for d in range(1, 21)]
    seed(conf.dir, "demo-app", days)
    before = sorted(p.name for p in conf.dir.iterdir())
    assert len(sb.keep_stamps(days, **conf.keep)) < len(days)  # the policy would delete sets

    def broken(cfg, target):
        target.write_bytes(b"PGDMP half")
        raise sb.BackupError("pg_dump failed (exit 1): connection refused")
    monkeypatch.setattr(sb, "dump_database", broken)
    assert sb.main(["--config", str(cfg), "run"]) == 1
    assert sorted(p.name for p in conf.dir.iterdir() if p.name not in ("status.json", ".lock")) == before

    monkeypatch.setattr(sb, "dump_database", fake_dump(sb))
    assert sb.main(["--config", str(cfg), "run"]) == 0
    new = json.loads((conf.dir / "status.json").read_text())["last_set"][len("demo-app-"):]
    left = {p.name for p in conf.dir.iterdir()}
    # daily 3: the new set, 05-20, 05-19; weekly 2: the new set, 05-20 (W21); monthly 2: the
    # new set, 05-20 (May 2024). Every other seeded set is gone with its checksum file.
    kept = {new, stamp("2024-05-20T01:00:00"), stamp("2024-05-19T01:00:00")}
    assert {n[9:25] for n in left if n.startswith("demo-app-")} == kept
    for s in kept:
        assert {f"demo-app-{s}.dump", f"demo-app-{s}.dump.sha256"} <= left


def watch_a_set_with_media(cfg, monkeypatch, archive_error: str | None = None) -> list:
    """Configure a media volume and record, for the dump and then the media archive, the
    path each was asked to write and the names in the directory at that moment. The archive
    writes b"media", or half an archive and fails with archive_error."""
    config = json.loads(cfg.read_text())
    config["media_volumes"] = ["uploads"]
    cfg.write_text(json.dumps(config))
    seen = []
    monkeypatch.setattr(sb, "dump_database", fake_dump(sb, seen=seen))

    def archive(volume, target):
        seen.append((Path(target), sorted(p.name for p in Path(target).parent.iterdir())))
        if archive_error:
            target.write_bytes(b"half an archive")
            raise sb.BackupError(archive_error)
        target.write_bytes(b"media")
        return hashlib.sha256(b"media").hexdigest(), len(b"media")
    monkeypatch.setattr(sb, "archive_volume", archive)
    return seen


def test_files_are_written_under_temporary_names_and_renamed_only_when_the_set_is_complete(
        cfg, monkeypatch):
    seen = watch_a_set_with_media(cfg, monkeypatch)
    conf = sb.Config(str(cfg))
    assert sb.main(["--config", str(cfg), "run"]) == 0
    name = json.loads((conf.dir / "status.json").read_text())["last_set"]
    dump, media = f"{name}.dump", f"{name}.media-uploads.tar.gz"
    assert [target for target, _ in seen] == [conf.dir / f"{dump}.partial", conf.dir / f"{media}.partial"]
    # While the set was written, none of its final names (nor checksum files) existed: the
    # dump stays under its temporary name until the last file of the set is complete.
    for _, names in seen:
        assert not [n for n in names if n.startswith(name) and not n.endswith(".partial")], names
    assert f"{dump}.partial" in seen[1][1]
    left = {p.name for p in conf.dir.iterdir()}
    assert {dump, f"{dump}.sha256", media, f"{media}.sha256"} <= left
    assert not [n for n in left if n.endswith(".partial")]
    expected_sum = hashlib.sha256(b"PGDMP fake dump").hexdigest()
    assert (conf.dir / f"{dump}.sha256").read_text() == f"{expected_sum}  {dump}\n"


def test_a_set_whose_last_file_fails_never_appears_under_its_final_names(cfg, monkeypatch):
    seen = watch_a_set_with_media(cfg, monkeypatch, archive_error="tar of the volume uploads failed (exit 2)")
    conf = sb.Config(str(cfg))
    assert sb.main(["--config", str(cfg), "run"]) == 1
    assert len(seen) == 2 and seen[0][0].name.endswith(".dump.partial")
    # When the archive failed, the finished dump was still under its temporary name only.
    assert [n for n in seen[1][1] if n.endswith(".dump") or n.endswith(".sha256")] == []
    # Neither the complete dump nor the half archive is left, under any name.
    assert sorted(p.name for p in conf.dir.iterdir()) == [".lock", "status.json"]
    assert sb.complete_sets(conf) == []


def test_the_free_space_guard_refuses_before_dumping(cfg, tmp_path, monkeypatch):
    config = json.loads(cfg.read_text())
    config["min_free_mb"] = 1 << 40
    cfg.write_text(json.dumps(config))
    monkeypatch.setattr(sb, "dump_database", lambda *a: pytest.fail("dumped despite the guard"))
    assert sb.main(["--config", str(cfg), "run"]) == 1
    assert "below the threshold" in (tmp_path / "alerts").read_text()


def test_the_webhook_receives_the_failure(cfg, tmp_path):
    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    (tmp_path / "secrets.json").write_text(json.dumps(
        {"alert_webhook": f"http://127.0.0.1:{server.server_port}/hook"}))
    sb.alert(sb.Config(str(cfg)), "backup-failed", "disk on fire")
    thread.join(10)
    server.server_close()
    assert received and received[0]["event"] == "backup-failed"
    assert received[0]["app"] == "demo-app" and received[0]["message"] == "disk on fire"


def test_a_broken_alert_hook_does_not_hide_the_failure(cfg, tmp_path, monkeypatch, capsys):
    # Both hooks broken: the command runs (it leaves a mark) and exits 3, the webhook's port
    # has a socket bound but not listening, so the connection is refused.
    config = json.loads(cfg.read_text())
    config["alert_command"] = f"echo \"$SHIPSHAPE_BACKUP_EVENT\" >> {tmp_path}/alerts; exit 3"
    cfg.write_text(json.dumps(config))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        (tmp_path / "secrets.json").write_text(json.dumps(
            {"alert_webhook": f"http://127.0.0.1:{closed.getsockname()[1]}/hook"}))

        def broken(cfg, target):
            raise sb.BackupError("pg_dump failed (exit 1): connection refused")
        monkeypatch.setattr(sb, "dump_database", broken)
        # The hooks' failures raise nothing out of the run: it ends with its own exit code.
        assert sb.main(["--config", str(cfg), "run"]) == 1

    assert (tmp_path / "alerts").read_text() == "backup-failed\n"  # the command was called
    stderr = capsys.readouterr().err.splitlines()
    # The backup's failure is in the journal, and so is each broken hook.
    assert "shipshape-backup run: pg_dump failed (exit 1): connection refused" in stderr, stderr
    assert "shipshape-backup: the alert command failed (exit 3)" in stderr, stderr
    assert "shipshape-backup: the alert webhook failed: URLError" in stderr, stderr
    # The status file, which monitoring reads, still records the backup's failure.
    status = json.loads((sb.Config(str(cfg)).dir / "status.json").read_text())
    assert status["last_error"] == "pg_dump failed (exit 1): connection refused"
    dt.datetime.strptime(status["last_failure"], "%Y-%m-%dT%H:%M:%SZ")
    assert "last_success" not in status


def test_two_runs_in_one_second_get_different_names(cfg, monkeypatch):
    monkeypatch.setattr(sb, "dump_database", fake_dump(sb))
    conf = sb.Config(str(cfg))
    first = sb.write_set(conf, conf.dir)[0]
    second = sb.write_set(conf, conf.dir)[0]
    assert first != second
