#!/usr/bin/env python3
"""Benchmark the backup and the restore of a database of about 100 MB.

Runs against a server where the backups role is applied and the app's database runs,
reached with `docker exec` (a Molecule instance or the demo server). By default that is
the instance of the `backups` scenario:

    .venv/bin/molecule converge -s backups      # the server, the example app and the role
    python3 scripts/bench_backup.py             # fill the database, time backup and restore
    .venv/bin/molecule destroy -s backups

It fills the database with a table of about --size-mb (rows of random hex text, which
pg_dump's compression only halves: a pessimistic case), then runs `shipshape-backup run` (pg_dump -Fc, read-back check,
checksums, media volumes, retention, the off-site restic copy and its forget --prune) and
`shipshape-backup restore latest` (checksum check, pg_restore --clean in one transaction)
--runs times each, and prints the median, minimum and maximum of each, with the time
pg_dump and pg_restore themselves took. The table is dropped at the end (--keep-data keeps it).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

BATCH_ROWS = 100_000


def docker_exec(container: str, *cmd: str, input_text: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", "-i", container, *cmd], input=input_text,
                          capture_output=True, text=True, check=False)


def must(proc: subprocess.CompletedProcess, what: str) -> str:
    if proc.returncode != 0:
        sys.exit(f"bench_backup: {what} failed (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
    return proc.stdout


def psql(server: str, db: str, sql: str) -> str:
    return must(docker_exec(server, "docker", "exec", "-i", db, "sh", "-c",
                            'psql -X -q -t -A -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" '
                            '-d "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"', input_text=sql),
                f"psql {sql[:60]!r}").strip()


def fill(server: str, db: str, size_mb: int) -> int:
    psql(server, db, "CREATE TABLE IF NOT EXISTS bench_payload (id bigserial PRIMARY KEY, "
                     "created timestamptz NOT NULL DEFAULT now(), title text NOT NULL, body text NOT NULL)")
    target = size_mb * 1024 * 1024
    while True:
        size = int(psql(server, db, "SELECT pg_database_size(current_database())"))
        if size >= target:
            return size
        # Random hex text: pg_dump's compression only halves it, a pessimistic case for app data.
        psql(server, db, "INSERT INTO bench_payload (title, body) SELECT 'row ' || g, "
                         "md5(random()::text) || md5(random()::text) || md5(random()::text) || "
                         f"md5(random()::text) || ' ' || md5(g::text) FROM generate_series(1, {BATCH_ROWS}) g")


def timed(server: str, *cmd: str) -> tuple:
    started = time.monotonic()
    proc = docker_exec(server, *cmd)
    seconds = time.monotonic() - started
    must(proc, " ".join(cmd))
    return seconds, proc.stderr


def seconds_in(log: str, pattern: str) -> float | None:
    match = re.search(pattern, log)
    return float(match.group(1)) if match else None


def summary(label: str, values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return f"  {label:<34} n/a"
    return (f"  {label:<34} median {statistics.median(values):7.1f}s   "
            f"min {min(values):6.1f}s   max {max(values):6.1f}s   (n={len(values)})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="backups-debian13",
                        help="container of the server (default: the backups scenario's instance)")
    parser.add_argument("--db-project", default="example-data",
                        help="Compose project of the database (default example-data)")
    parser.add_argument("--size-mb", type=int, default=100, help="database size to reach (default 100)")
    parser.add_argument("--runs", type=int, default=3, help="backups and restores to time (default 3)")
    parser.add_argument("--keep-data", action="store_true", help="keep the benchmark table afterwards")
    args = parser.parse_args(argv)

    if docker_exec(args.server, "true").returncode != 0:
        sys.exit(f"bench_backup: no running container {args.server}; start it with "
                 "`.venv/bin/molecule converge -s backups` (or pass --server)")
    db = must(docker_exec(args.server, "docker", "ps", "-q", "--filter",
                          f"label=com.docker.compose.project={args.db_project}",
                          "--filter", "label=com.docker.compose.service=db"), "finding the database").strip()
    if not db:
        sys.exit(f"bench_backup: no running database container of project {args.db_project} on {args.server}")

    print(f"bench_backup: filling the database to about {args.size_mb} MB ...", flush=True)
    size = fill(args.server, db, args.size_mb)
    rows = int(psql(args.server, db, "SELECT count(*) FROM bench_payload"))
    print(f"bench_backup: database {size / 1048576:.0f} MiB ({rows} benchmark rows); "
          f"{args.runs} backups, then {args.runs} restores", flush=True)

    backup, dump, restore, pg_restore = [], [], [], []
    dump_size = ""
    for i in range(args.runs):
        seconds, log = timed(args.server, "shipshape-backup", "run")
        backup.append(seconds)
        dump.append(seconds_in(log, r"wrote \S+\.dump \([^,]+, ([0-9.]+)s\)"))
        dump_size = (re.search(r"wrote \S+\.dump \(([^,]+),", log) or [None, "?"])[1]
        print(f"  backup {i + 1}: {seconds:.1f}s (dump {dump_size})", flush=True)
    for i in range(args.runs):
        seconds, log = timed(args.server, "shipshape-backup", "restore", "latest", "--no-media")
        restore.append(seconds)
        pg_restore.append(seconds_in(log, r"restored \S+\.dump in ([0-9.]+)s"))
        print(f"  restore {i + 1}: {seconds:.1f}s", flush=True)
    after = int(psql(args.server, db, "SELECT count(*) FROM bench_payload"))
    if after != rows:
        sys.exit(f"bench_backup: the restore left {after} rows instead of {rows}")

    print(f"\nDatabase {size / 1048576:.0f} MiB on disk, custom-format dump {dump_size}:")
    print(summary("backup (shipshape-backup run)", backup))
    print(summary("  of which pg_dump to file", dump))
    print(summary("restore (shipshape-backup restore)", restore))
    print(summary("  of which pg_restore", pg_restore))

    if not args.keep_data:
        psql(args.server, db, "DROP TABLE bench_payload")
        print("bench_backup: dropped the benchmark table (the backups that hold it stay until retention)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
