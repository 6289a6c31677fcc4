#!/usr/bin/python3
"""Backups of a Docker Compose app: its PostgreSQL database and its media volumes.

Installed by the shipshape `backups` role as /usr/local/sbin/shipshape-backup. It reads
its settings from a JSON file (default /etc/shipshape/backup.json, written by the role)
and its secrets (restic environment, alert webhook) from the file that one names.

  shipshape-backup run                  make a backup set now (shipshape-backup.timer runs this)
  shipshape-backup list [--json]        the complete backup sets, newest first
  shipshape-backup restore NAME|latest  restore a set into the running database and media volumes
  shipshape-backup safety-dump          dump the current database to DIR/safety (before a restore)
  shipshape-backup drill [NAME|latest]  restore into a scratch PostgreSQL container, run the smoke
                                        queries, record last_verified in the status file
  shipshape-backup check                `restic check` of the off-site repository
  shipshape-backup fetch [SNAPSHOT]     copy a set from the restic repository back into DIR
  shipshape-backup repo-status          "ok" or "missing": is the restic repository there?
  shipshape-backup init-repo            create the restic repository when it is missing
  shipshape-backup status               print the status file

A backup set is the files of one run, named APP-YYYYmmddTHHMMSSZ.* in DIR:
  APP-STAMP.dump                 `pg_dump -Fc` of the database (checked with `pg_restore --list`)
  APP-STAMP.media-VOLUME.tar.gz  the content of a media volume
and beside each file FILE.sha256 (`sha256sum -c` format). Files are written under a
temporary name (*.partial) and renamed when complete, mode 0600 in a 0700 directory; a
set is complete when each of its files has its checksum file. Retention (keep the newest
set of each of the last N days, ISO weeks and months, in UTC) runs only after a good
backup, and the same policy is applied to the restic repository (`forget --prune`).
On any failure the command exits 1, leaves no partial file, records the error in the
status file and calls the alert hook (a shell command and/or a webhook).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import secrets as pysecrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DEFAULT_CONFIG = "/etc/shipshape/backup.json"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
CHUNK = 1 << 20
PGDMP_MAGIC = b"PGDMP"
# The node exporter's directory of text files (Debian's package, as the monitoring role runs it).
METRICS_DIR = "/var/lib/prometheus/node-exporter"


class BackupError(Exception):
    """A failure with a message meant for the operator."""


class Terminated(BackupError):
    """The process was asked to stop (SIGTERM, e.g. a systemd timeout)."""


def log(message: str) -> None:
    """Progress for the journal; stdout carries only results (paths, JSON)."""
    print(f"shipshape-backup: {message}", file=sys.stderr, flush=True)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------ settings

class Config:
    def __init__(self, path: str):
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise BackupError(f"no settings file {path} (the backups role writes it)") from None
        except ValueError as err:
            raise BackupError(f"{path} is not valid JSON: {err}") from None
        self.path = path
        self.app = raw["app"]
        self.dir = Path(raw["dir"])
        self.status_file = Path(raw.get("status_file") or self.dir / "status.json")
        # Read by the node exporter (monitoring role) when its directory exists.
        self.metrics_file = Path(raw.get("metrics_file") or f"{METRICS_DIR}/shipshape_backup_{self.app}.prom")
        db = raw.get("db") or {}
        self.db_enabled = bool(db.get("enabled", True))
        self.db_project = db.get("project", f"{self.app}-data")
        self.db_service = db.get("service", "db")
        self.media_volumes = list(raw.get("media_volumes") or [])
        keep = raw.get("keep") or {}
        self.keep = {k: int(keep.get(k, 0)) for k in ("daily", "weekly", "monthly")}
        self.min_free_mb = int(raw.get("min_free_mb", 0))
        self.alert_command = raw.get("alert_command") or ""
        self.lock_timeout = int(raw.get("lock_timeout", 3600))
        self.safety_keep = int(raw.get("safety_keep", 3))
        restic = raw.get("restic") or {}
        self.restic_enabled = bool(restic.get("enabled", False))
        self.restic_repository = restic.get("repository", "")
        self.restic_password_file = restic.get("password_file", "")
        self.restic_cache_dir = restic.get("cache_dir", "")
        self.restic_check_args = list(restic.get("check_args") or [])
        drill = raw.get("drill") or {}
        self.drill_image = drill.get("image") or ""
        self.drill_queries = list(drill.get("queries") or [])
        self.drill_timeout = int(drill.get("timeout", 180))
        self.secrets = {}
        secrets_file = raw.get("secrets_file")
        if secrets_file and Path(secrets_file).exists():
            try:
                self.secrets = json.loads(Path(secrets_file).read_text())
            except ValueError:
                raise BackupError(f"{secrets_file} is not valid JSON") from None
        self.name_re = re.compile(
            rf"^{re.escape(self.app)}-(\d{{8}}T\d{{6}}Z)\.(dump|media-[A-Za-z0-9][A-Za-z0-9_.-]*\.tar\.gz)(\.sha256)?$")

    @property
    def restic_tag(self) -> str:
        return f"shipshape-{self.app}"


# ------------------------------------------------------------------ small helpers

def run(cmd: list, *, check: bool = True, timeout: float | None = None, input_file=None,
        env: dict | None = None, what: str = "") -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, stdin=input_file, capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-2000:]
        what = what or f"{' '.join(map(str, cmd[:3]))} ..."
        raise BackupError(f"{what} failed (exit {proc.returncode}): {detail}")
    return proc


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


@contextlib.contextmanager
def locked(cfg: Config):
    """One backup operation at a time per app (the timer, a restore, a drill)."""
    ensure_private_dir(cfg.dir)
    handle = open(cfg.dir / ".lock", "a")
    os.chmod(cfg.dir / ".lock", 0o600)
    deadline = time.monotonic() + cfg.lock_timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise BackupError(f"another backup operation of {cfg.app} holds {cfg.dir}/.lock "
                                  f"for more than {cfg.lock_timeout}s") from None
            time.sleep(2)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


# ------------------------------------------------------------------ status file

def read_status(cfg: Config) -> dict:
    try:
        return json.loads(cfg.status_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def update_status(cfg: Config, **changes) -> dict:
    """Merge changes into the status file (written atomically, mode 0600); other keys stay."""
    status = read_status(cfg)
    status.update(changes)
    status["app"] = cfg.app
    tmp = cfg.status_file.with_name(cfg.status_file.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(status, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, cfg.status_file)
    write_metrics(cfg, status)
    return status


def _timestamp(value: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return None


def write_metrics(cfg: Config, status: dict) -> None:
    """The backups' state for the monitoring's alerts, as the node exporter's text format:
    when the last backup succeeded, and whether the last run did. Only where the node
    exporter reads (its directory exists), atomically, readable by it."""
    if not cfg.metrics_file.parent.is_dir():
        return
    success = _timestamp(status.get("last_success", ""))
    failure = _timestamp(status.get("last_failure", ""))
    label = json.dumps(cfg.app)
    lines = ["# HELP shipshape_backup_last_run_success 1 when the last backup run succeeded, 0 when it failed.",
             "# TYPE shipshape_backup_last_run_success gauge",
             f"shipshape_backup_last_run_success{{app={label}}} {0 if failure and (not success or failure > success) else 1}"]
    if success:
        lines += ["# HELP shipshape_backup_last_success_timestamp_seconds When the last backup succeeded (Unix time).",
                  "# TYPE shipshape_backup_last_success_timestamp_seconds gauge",
                  f"shipshape_backup_last_success_timestamp_seconds{{app={label}}} {success:.0f}"]
    tmp = cfg.metrics_file.with_name(cfg.metrics_file.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, cfg.metrics_file)


# ------------------------------------------------------------------ alerts

def alert(cfg: Config, event: str, message: str) -> None:
    """Call the alert command and/or webhook; a broken hook is logged, never fatal."""
    host = socket.gethostname()
    when = iso(utcnow())
    if cfg.alert_command:
        env = dict(os.environ, SHIPSHAPE_BACKUP_APP=cfg.app, SHIPSHAPE_BACKUP_EVENT=event,
                   SHIPSHAPE_BACKUP_MESSAGE=message, SHIPSHAPE_BACKUP_HOST=host,
                   SHIPSHAPE_BACKUP_TIME=when)
        try:
            proc = subprocess.run(["/bin/sh", "-c", cfg.alert_command], env=env, timeout=60,
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                log(f"the alert command failed (exit {proc.returncode})")
            else:
                log("alert command called")
        except (OSError, subprocess.TimeoutExpired) as err:
            log(f"the alert command failed: {err}")
    webhook = cfg.secrets.get("alert_webhook") or ""
    if webhook:
        body = json.dumps({"app": cfg.app, "host": host, "event": event, "message": message,
                           "time": when, "text": f"[{host}] {cfg.app}: {event}: {message}"}).encode()
        request = urllib.request.Request(webhook, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=15) as resp:
                log(f"alert webhook answered {resp.status}")
        except Exception as err:  # noqa: BLE001 - any failure of the hook is only logged
            log(f"the alert webhook failed: {type(err).__name__}")


# ------------------------------------------------------------------ backup sets

def parse_stamp(stamp: str) -> dt.datetime:
    return dt.datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=dt.timezone.utc)


def scan(cfg: Config) -> dict:
    """{stamp: {"data": {name: path}, "sums": {name: path}}} of every file that looks like a set."""
    sets: dict = {}
    if not cfg.dir.is_dir():
        return sets
    for path in cfg.dir.iterdir():
        match = cfg.name_re.match(path.name)
        if not match or not path.is_file():
            continue
        entry = sets.setdefault(match.group(1), {"data": {}, "sums": {}})
        data_name = path.name[: -len(".sha256")] if match.group(3) else path.name
        entry["sums" if match.group(3) else "data"][data_name] = path
    return sets


def complete_sets(cfg: Config) -> list:
    """Complete sets, newest first: [{"name", "stamp", "time", "files": [paths], "size"}]."""
    result = []
    for stamp, entry in scan(cfg).items():
        data = entry["data"]
        if not data or any(name not in entry["sums"] for name in data):
            continue
        files = sorted(data.values())
        result.append({"name": f"{cfg.app}-{stamp}", "stamp": stamp, "time": parse_stamp(stamp),
                       "files": files, "size": sum(p.stat().st_size for p in files)})
    return sorted(result, key=lambda s: s["stamp"], reverse=True)


def find_set(cfg: Config, name: str) -> dict:
    sets = complete_sets(cfg)
    if not sets:
        raise BackupError(f"there is no complete backup of {cfg.app} in {cfg.dir}")
    if name in ("", "latest"):
        return sets[0]
    for candidate in sets:
        if name in (candidate["name"], candidate["stamp"]):
            return candidate
    names = ", ".join(s["name"] for s in sets[:10])
    raise BackupError(f"no complete backup named {name} in {cfg.dir}; the newest are: {names}")


def verify_checksums(files: list) -> None:
    for path in files:
        sum_file = path.with_name(path.name + ".sha256")
        try:
            expected = sum_file.read_text().split()[0]
        except (OSError, IndexError):
            raise BackupError(f"{sum_file} is missing or empty") from None
        if sha256_of(path) != expected:
            raise BackupError(f"{path.name} does not match its checksum: the file is damaged")


def keep_stamps(stamps: list, daily: int, weekly: int, monthly: int) -> set:
    """The stamps a keep-daily/weekly/monthly policy keeps (restic's semantics, in UTC).

    For each rule, walk from the newest and keep the newest set of each of the last N
    distinct days (ISO weeks, months) that have a set. The newest set is always kept.
    """
    ordered = sorted(set(stamps), key=parse_stamp, reverse=True)
    keep = set(ordered[:1])
    rules = ((daily, lambda t: t.strftime("%Y-%m-%d")),
             (weekly, lambda t: "%04d-W%02d" % t.isocalendar()[:2]),
             (monthly, lambda t: t.strftime("%Y-%m")))
    for count, bucket in rules:
        seen: list = []
        for stamp in ordered:
            if len(seen) >= count:
                break
            key = bucket(parse_stamp(stamp))
            if key in seen:
                continue
            seen.append(key)
            keep.add(stamp)
    return keep


def apply_retention(cfg: Config) -> list:
    """Delete the files of the sets the policy does not keep; returns the removed set names."""
    all_sets = scan(cfg)
    complete = [s["stamp"] for s in complete_sets(cfg)]
    keep = keep_stamps(complete, **cfg.keep)
    removed = []
    for stamp, entry in sorted(all_sets.items()):
        if stamp in keep:
            continue
        for path in [*entry["data"].values(), *entry["sums"].values()]:
            path.unlink(missing_ok=True)
        removed.append(f"{cfg.app}-{stamp}")
    if removed:
        fsync_dir(cfg.dir)
    return removed


def remove_partials(directory: Path) -> None:
    if directory.is_dir():
        for path in directory.glob("*.partial"):
            log(f"removing {path.name}, left by an interrupted run")
            path.unlink(missing_ok=True)


# ------------------------------------------------------------------ docker

def db_container(cfg: Config) -> str:
    proc = run(["docker", "ps", "-q", "--no-trunc",
                "--filter", f"label=com.docker.compose.project={cfg.db_project}",
                "--filter", f"label=com.docker.compose.service={cfg.db_service}",
                "--filter", "status=running"], timeout=60)
    ids = proc.stdout.split()
    if not ids:
        raise BackupError(f"the database container (Compose project {cfg.db_project}, service "
                          f"{cfg.db_service}) is not running")
    return ids[0]


def volume_dir(volume: str) -> Path:
    proc = run(["docker", "volume", "inspect", "-f", "{{.Driver}} {{.Mountpoint}}", volume],
               check=False, timeout=60)
    if proc.returncode != 0:
        raise BackupError(f"the media volume {volume} does not exist")
    driver, _, mountpoint = proc.stdout.strip().partition(" ")
    if driver != "local":
        raise BackupError(f"the media volume {volume} uses the {driver} driver; only local volumes are supported")
    return Path(mountpoint)


PG_ENV = 'u="${POSTGRES_USER:-postgres}"; d="${POSTGRES_DB:-$u}"; '


def stream_to_file(cmd: list, target: Path, what: str, ok_codes=(0,)) -> tuple:
    """Run cmd, write its stdout to target (0600) while hashing it; (sha256, size)."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with tempfile.TemporaryFile() as errors, os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors)
        try:
            while chunk := proc.stdout.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            proc.stdout.close()
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        out.flush()
        os.fsync(out.fileno())
        if rc not in ok_codes:
            errors.seek(0)
            detail = errors.read().decode(errors="replace").strip()[-2000:]
            raise BackupError(f"{what} failed (exit {rc}): {detail}")
    if size == 0:
        raise BackupError(f"{what} wrote nothing")
    return digest.hexdigest(), size


def dump_database(cfg: Config, target: Path) -> tuple:
    container = db_container(cfg)
    sha, size = stream_to_file(
        ["docker", "exec", container, "sh", "-c", PG_ENV + 'exec pg_dump -Fc -U "$u" "$d"'],
        target, "pg_dump")
    with open(target, "rb") as handle:
        if handle.read(len(PGDMP_MAGIC)) != PGDMP_MAGIC:
            raise BackupError("pg_dump did not write a custom-format archive")
    with open(target, "rb") as handle:
        listing = run(["docker", "exec", "-i", container, "pg_restore", "--list"], check=False,
                      input_file=handle, timeout=3600)
    if listing.returncode != 0:
        raise BackupError(f"the new dump cannot be read back by pg_restore --list: {listing.stderr.strip()[-500:]}")
    return sha, size


def archive_volume(volume: str, target: Path) -> tuple:
    source = volume_dir(volume)
    # Exit 1 means a file changed while it was read: the archive is still valid.
    return stream_to_file(["tar", "--numeric-owner", "-C", str(source), "-czf", "-", "."],
                          target, f"tar of the volume {volume}", ok_codes=(0, 1))


def write_checksum(path: Path, final_name: str, sha: str) -> Path:
    tmp = path.with_name(final_name + ".sha256.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{sha}  {final_name}\n")
        handle.flush()
        os.fsync(handle.fileno())
    return tmp


def new_stamp(cfg: Config, directory: Path) -> str:
    """A stamp no file in directory uses yet (two runs within one second wait)."""
    while True:
        stamp = utcnow().strftime(STAMP_FORMAT)
        if not any(directory.glob(f"{cfg.app}-{stamp}.*")):
            return stamp
        time.sleep(1)


def write_set(cfg: Config, directory: Path, include_media: bool = True) -> tuple:
    """Write one set to directory: temporary names first, renamed when everything is good."""
    ensure_private_dir(directory)
    stamp = new_stamp(cfg, directory)
    pending = []  # (partial data, final data, partial checksum, final checksum)
    try:
        jobs = []
        if cfg.db_enabled:
            jobs.append((f"{cfg.app}-{stamp}.dump", lambda t: dump_database(cfg, t)))
        if include_media:
            for volume in cfg.media_volumes:
                jobs.append((f"{cfg.app}-{stamp}.media-{volume}.tar.gz",
                             lambda t, v=volume: archive_volume(v, t)))
        if not jobs:
            raise BackupError("nothing to back up: the database and every media volume are off")
        for final_name, job in jobs:
            partial = directory / (final_name + ".partial")
            pending.append([partial, directory / final_name, None, None])
            started = time.monotonic()
            sha, size = job(partial)
            log(f"wrote {final_name} ({human(size)}, {time.monotonic() - started:.1f}s)")
            pending[-1][2] = write_checksum(partial, final_name, sha)
            pending[-1][3] = directory / (final_name + ".sha256")
        for partial, final, _, _ in pending:
            os.rename(partial, final)
        for _, _, partial_sum, final_sum in pending:
            os.rename(partial_sum, final_sum)
        fsync_dir(directory)
    except BaseException:
        for partial, final, partial_sum, final_sum in pending:
            for path in (partial, partial_sum, final, final_sum):
                if path is not None:
                    path.unlink(missing_ok=True)
        raise
    return stamp, [final for _, final, _, _ in pending]


# ------------------------------------------------------------------ restic

def restic_env(cfg: Config) -> dict:
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (cfg.secrets.get("restic_env") or {}).items()})
    env.update(RESTIC_REPOSITORY=cfg.restic_repository, RESTIC_PASSWORD_FILE=cfg.restic_password_file,
               TZ="UTC")
    if cfg.restic_cache_dir:
        env["RESTIC_CACHE_DIR"] = cfg.restic_cache_dir
    return env


def restic(cfg: Config, *args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    if not cfg.restic_enabled:
        raise BackupError("off-site copies are off (backups_restic_enabled is false)")
    return run(["restic", *args], check=check, env=restic_env(cfg), timeout=timeout)


def restic_keep_args(cfg: Config) -> list:
    args = []
    for rule, count in cfg.keep.items():
        if count > 0:
            args += [f"--keep-{rule}", str(count)]
    return args


def offsite_copy(cfg: Config, stamp: str, files: list) -> str:
    when = parse_stamp(stamp).strftime("%Y-%m-%d %H:%M:%S")
    proc = restic(cfg, "backup", "--json", "--host", socket.gethostname(), "--tag", cfg.restic_tag,
                  "--time", when, *map(str, files))
    snapshot = ""
    for line in proc.stdout.splitlines():
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if message.get("message_type") == "summary":
                snapshot = message.get("snapshot_id", "")
    log(f"off-site copy: snapshot {snapshot[:8] or '?'} in the restic repository")
    restic(cfg, "forget", "--prune", "--host", socket.gethostname(), "--tag", cfg.restic_tag,
           "--group-by", "host,tags", *restic_keep_args(cfg))
    return snapshot


# ------------------------------------------------------------------ commands

def cmd_run(cfg: Config, args) -> int:
    started = time.monotonic()
    with locked(cfg):
        remove_partials(cfg.dir)
        free_mb = shutil.disk_usage(cfg.dir).free // (1024 * 1024)
        if free_mb < cfg.min_free_mb:
            raise BackupError(f"only {free_mb} MiB free in {cfg.dir}, below the threshold of "
                              f"{cfg.min_free_mb} MiB (backups_min_free_mb); no backup was made")
        stamp, files = write_set(cfg, cfg.dir)
        removed = apply_retention(cfg)
        if removed:
            log(f"retention removed {len(removed)} set(s): {', '.join(removed)}")
        changes = {}
        if cfg.restic_enabled:
            with_sums = [q for p in files for q in (p, p.with_name(p.name + ".sha256"))]
            changes["last_offsite_snapshot"] = offsite_copy(cfg, stamp, with_sums)
            changes["last_offsite"] = iso(utcnow())
        main_file = files[0]
        status = update_status(
            cfg, last_success=iso(utcnow()), last_set=f"{cfg.app}-{stamp}", last_file=str(main_file),
            last_size=main_file.stat().st_size,
            last_sha256=main_file.with_name(main_file.name + ".sha256").read_text().split()[0],
            last_files=[str(p) for p in files], last_set_size=sum(p.stat().st_size for p in files),
            last_duration_seconds=round(time.monotonic() - started, 1), **changes)
    log(f"backup {status['last_set']} done in {status['last_duration_seconds']}s")
    return 0


def cmd_list(cfg: Config, args) -> int:
    sets = complete_sets(cfg)
    if args.json:
        print(json.dumps([{"name": s["name"], "time": iso(s["time"]), "size": s["size"],
                           "files": [str(p) for p in s["files"]]} for s in sets], indent=2))
    else:
        for s in sets:
            print(f"{s['name']}  {iso(s['time'])}  {human(s['size'])}  {len(s['files'])} file(s)")
    return 0


def cmd_safety_dump(cfg: Config, args) -> int:
    directory = cfg.dir / "safety"
    with locked(cfg):
        remove_partials(directory)
        _, files = write_set(cfg, directory, include_media=not args.no_media)
        dumps = sorted((p for p in directory.iterdir() if cfg.name_re.match(p.name)),
                       key=lambda p: p.name, reverse=True)
        stamps = sorted({cfg.name_re.match(p.name).group(1) for p in dumps}, reverse=True)
        for path in dumps:
            if cfg.name_re.match(path.name).group(1) not in stamps[: max(cfg.safety_keep, 1)]:
                path.unlink(missing_ok=True)
    for path in files:
        print(path)
    return 0


def restore_volume(volume: str, archive: Path) -> None:
    busy = run(["docker", "ps", "-q", "--filter", f"volume={volume}"], timeout=60).stdout.split()
    if busy:
        raise BackupError(f"running containers use the volume {volume}; stop the app before restoring it")
    target = volume_dir(volume)
    staging = target.with_name(target.name + ".restore")
    old = target.with_name(target.name + ".old")
    for leftover in (staging, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    staging.mkdir(mode=0o755)
    try:
        run(["tar", "--numeric-owner", "-C", str(staging), "-xzpf", str(archive)], what=f"unpacking {archive.name}")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def cmd_restore(cfg: Config, args) -> int:
    with locked(cfg):
        chosen = find_set(cfg, args.name)
        verify_checksums(chosen["files"])
        log(f"restoring {chosen['name']} (checksums verified)")
        for path in chosen["files"]:
            started = time.monotonic()
            if path.name.endswith(".dump"):
                if not cfg.db_enabled:
                    continue
                container = db_container(cfg)
                with open(path, "rb") as handle:
                    run(["docker", "exec", "-i", container, "sh", "-c", PG_ENV +
                         'exec pg_restore --clean --if-exists --no-owner --single-transaction '
                         '--exit-on-error -U "$u" -d "$d"'], input_file=handle, what=f"pg_restore of {path.name}")
            elif not args.no_media:
                volume = cfg.name_re.match(path.name).group(2)[len("media-"):-len(".tar.gz")]
                restore_volume(volume, path)
            else:
                continue
            log(f"restored {path.name} in {time.monotonic() - started:.1f}s")
        update_status(cfg, last_restore=iso(utcnow()), last_restore_set=chosen["name"])
    print(chosen["name"])
    return 0


def drill_queries(cfg: Config) -> list:
    return cfg.drill_queries or [{
        "name": "tables",
        "sql": "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        "min": 1}]


def cmd_drill(cfg: Config, args) -> int:
    with locked(cfg):
        chosen = find_set(cfg, args.name)
        dumps = [p for p in chosen["files"] if p.name.endswith(".dump")]
        if not dumps:
            raise BackupError(f"{chosen['name']} holds no database dump")
        verify_checksums(chosen["files"])
        image = cfg.drill_image
        if not image:
            image = run(["docker", "inspect", "-f", "{{.Config.Image}}", db_container(cfg)],
                        timeout=60).stdout.strip()
        name = f"{cfg.app}-restore-drill"
        run(["docker", "rm", "-f", "-v", name], check=False, timeout=120)
        started = time.monotonic()
        results = {}
        try:
            # No network: the scratch database is reachable only through docker exec.
            run(["docker", "run", "-d", "--name", name, "--network", "none",
                 "--label", f"shipshape.restore-drill={cfg.app}",
                 "-e", f"POSTGRES_PASSWORD={pysecrets.token_urlsafe(24)}",
                 "-e", "POSTGRES_USER=postgres", "-e", "POSTGRES_DB=drill", image], timeout=300)
            deadline = time.monotonic() + cfg.drill_timeout
            while True:
                ready = run(["docker", "exec", name, "pg_isready", "-q", "-h", "127.0.0.1",
                             "-U", "postgres", "-d", "drill"], check=False, timeout=30)
                if ready.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise BackupError(f"the scratch database ({image}) did not start within {cfg.drill_timeout}s")
                time.sleep(1)
            with open(dumps[0], "rb") as handle:
                run(["docker", "exec", "-i", name, "pg_restore", "--no-owner", "--no-privileges",
                     "--exit-on-error", "-U", "postgres", "-d", "drill"], input_file=handle,
                    what=f"pg_restore of {dumps[0].name} into the scratch database")
            failures = []
            for query in drill_queries(cfg):
                proc = run(["docker", "exec", name, "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                            "-U", "postgres", "-d", "drill", "-c", query["sql"]], check=False, timeout=600)
                value = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
                if proc.returncode != 0 or not re.fullmatch(r"-?\d+", value):
                    failures.append(f"{query['name']}: {(proc.stderr or value).strip()[-300:]}")
                    continue
                results[query["name"]] = int(value)
                if int(value) < int(query.get("min", 0)):
                    failures.append(f"{query['name']}: {value} rows, fewer than {query.get('min', 0)}")
            if failures:
                raise BackupError(f"the restore drill of {chosen['name']} failed its smoke queries: "
                                  + "; ".join(failures))
        finally:
            run(["docker", "rm", "-f", "-v", name], check=False, timeout=120)
        seconds = round(time.monotonic() - started, 1)
        update_status(cfg, last_verified=iso(utcnow()), last_verified_set=chosen["name"],
                      last_verified_results=results, last_verified_seconds=seconds)
    log(f"restore drill of {chosen['name']} passed in {seconds}s: {results}")
    print(json.dumps({"set": chosen["name"], "results": results, "seconds": seconds}))
    return 0


def cmd_check(cfg: Config, args) -> int:
    with locked(cfg):
        restic(cfg, "check", *cfg.restic_check_args)
        update_status(cfg, last_check=iso(utcnow()))
    log("restic check passed")
    return 0


def cmd_fetch(cfg: Config, args) -> int:
    with locked(cfg):
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cfg.dir))
        try:
            restic(cfg, "restore", args.snapshot, "--host", socket.gethostname(), "--tag",
                   cfg.restic_tag, "--target", str(staging))
            found = [p for p in staging.rglob("*") if p.is_file() and cfg.name_re.match(p.name)]
            data = [p for p in found if not p.name.endswith(".sha256")]
            if not data:
                raise BackupError(f"snapshot {args.snapshot} holds no backup set of {cfg.app}")
            verify_checksums(data)
            for path in found:
                os.chmod(path, 0o600)
                os.replace(path, cfg.dir / path.name)
            fsync_dir(cfg.dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for path in sorted(data):
        print(cfg.dir / path.name)
    return 0


def cmd_repo_status(cfg: Config, args) -> int:
    proc = restic(cfg, "cat", "config", check=False, timeout=300)
    text = proc.stderr + proc.stdout
    if proc.returncode == 0:
        print("ok")
        return 0
    if proc.returncode == 10 or "Is there a repository at the following location?" in text \
            or "repository does not exist" in text:
        print("missing")
        return 0
    if proc.returncode == 12 or "wrong password" in text:
        raise BackupError(f"the restic password does not open the repository {cfg.restic_repository} "
                          "(backups_restic_password)")
    raise BackupError(f"cannot reach the restic repository {cfg.restic_repository}: {text.strip()[-500:]}")


def cmd_init_repo(cfg: Config, args) -> int:
    restic(cfg, "init", timeout=600)
    print("initialized")
    return 0


def cmd_status(cfg: Config, args) -> int:
    print(json.dumps(read_status(cfg), indent=2, sort_keys=True))
    return 0


ALERTING = {"run": "backup-failed", "check": "restic-check-failed", "drill": "restore-drill-failed"}
FAILURE_KEYS = {"run": ("last_failure", "last_error"), "check": ("last_check_failure", "last_check_error"),
                "drill": ("last_verify_failure", "last_verify_error")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="shipshape-backup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"settings file (default {DEFAULT_CONFIG})")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="make a backup set now")
    p = sub.add_parser("list", help="the complete backup sets, newest first")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("safety-dump", help="dump the current data to DIR/safety")
    p.add_argument("--no-media", action="store_true", help="only the database")
    p = sub.add_parser("restore", help="restore a set into the running database and media volumes")
    p.add_argument("name", help="set name (APP-STAMP), stamp, or latest")
    p.add_argument("--no-media", action="store_true", help="only the database")
    p = sub.add_parser("drill", help="restore into a scratch container and run the smoke queries")
    p.add_argument("name", nargs="?", default="latest")
    sub.add_parser("check", help="restic check of the off-site repository")
    p = sub.add_parser("fetch", help="copy a set from the restic repository into DIR")
    p.add_argument("snapshot", nargs="?", default="latest")
    sub.add_parser("repo-status", help="print ok or missing for the restic repository")
    sub.add_parser("init-repo", help="create the restic repository")
    sub.add_parser("status", help="print the status file")
    args = parser.parse_args(argv)

    os.umask(0o077)
    signal.signal(signal.SIGTERM, _terminate)
    commands = {"run": cmd_run, "list": cmd_list, "safety-dump": cmd_safety_dump,
                "restore": cmd_restore, "drill": cmd_drill, "check": cmd_check, "fetch": cmd_fetch,
                "repo-status": cmd_repo_status, "init-repo": cmd_init_repo, "status": cmd_status}
    cfg = None
    try:
        cfg = Config(args.config)
        return commands[args.command](cfg, args)
    except (BackupError, OSError, subprocess.SubprocessError) as err:
        message = str(err) if isinstance(err, BackupError) else f"{type(err).__name__}: {err}"
        print(f"shipshape-backup {args.command}: {message}", file=sys.stderr, flush=True)
        if cfg is not None and args.command in ALERTING:
            with contextlib.suppress(Exception):
                when_key, error_key = FAILURE_KEYS[args.command]
                update_status(cfg, **{when_key: iso(utcnow()), error_key: message})
            alert(cfg, ALERTING[args.command], message)
        return 1


def _terminate(signum, frame):
    raise Terminated("stopped by SIGTERM (systemd stop or timeout)")


if __name__ == "__main__":
    sys.exit(main())
