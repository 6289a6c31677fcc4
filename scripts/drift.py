#!/usr/bin/env python3
"""What drifted on the servers: site.yml in check mode with diff, summed up. It changes
nothing.

  drift.py -i inventories/prod [--vault-password-file FILE] [--json] [ANSIBLE-PLAYBOOK OPTIONS]

Runs `ansible-playbook site.yml --check --diff` (the post-deploy validation left out: it
checks, it keeps nothing) and prints one row per task that would change something - the
server, the task, what differs (the first lines of the diff, when the task has one) - and the
command that puts it back. Everything after the known options goes to ansible-playbook
(`--limit web`, `-e ...`).

A task that handles a secret shows no diff (no_log): its row says only that it would
change. Exit status: 0 nothing drifted, 1 something drifted, 2 the run failed (a server
unreachable, a task failed, bad usage).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DIFF_LINES = 12
# Roles whose name is also the tag of their stage in site.yml (playbooks/*.yml); the app role on
# the shared database host is the stage db.
STAGE_ROLES = ("hardening", "ufw", "docker", "tls", "backups", "app")


def diff_lines(diff) -> list:
    """The first lines of a task's diff: unified lines of each before/after pair, or a
    prepared diff's text."""
    lines = []
    for item in diff if isinstance(diff, list) else [diff]:
        if not isinstance(item, dict):
            continue
        if "prepared" in item:
            lines += str(item["prepared"]).splitlines()
            continue
        before, after = item.get("before"), item.get("after")
        if isinstance(before, str) and isinstance(after, str):
            header = item.get("before_header") or item.get("after_header") or ""
            lines += [line.rstrip("\n") for line in difflib.unified_diff(
                before.splitlines(), after.splitlines(), fromfile=f"{header} (server)",
                tofile=f"{header} (wanted)", lineterm="", n=0)]
        elif before != after and (before is not None or after is not None):
            lines.append(f"{json.dumps(before, sort_keys=True)} -> {json.dumps(after, sort_keys=True)}")
    return lines[:DIFF_LINES] + ([f"... ({len(lines) - DIFF_LINES} more lines)"] if len(lines) > DIFF_LINES else [])


def what_changes(result: dict) -> list:
    """For a task without a diff: what it says it would change - for a loop, each item that
    would change (by its label); the files of the app role's app_write, the containers of a
    Compose task, or its message."""
    if isinstance(result.get("results"), list):
        lines = []
        for item in result["results"]:
            if isinstance(item, dict) and item.get("changed"):
                label = item.get("_ansible_item_label", item.get("item", "?"))
                lines.append(f"item: {label if isinstance(label, str) else json.dumps(label, sort_keys=True)}")
                lines += [f"  {line}" for line in diff_lines(item.get("diff", []))]
        return lines[:DIFF_LINES]
    if isinstance(result.get("changed_files"), list):
        return [f"differs: {path}" for path in result["changed_files"]]
    if isinstance(result.get("actions"), list):
        return [f"{action.get('what', '?')} {action.get('id', '?')}: {action.get('status', '?')}"
                for action in result["actions"] if isinstance(action, dict)][:DIFF_LINES]
    if isinstance(result.get("msg"), str):
        return [" ".join(result["msg"].split())]
    return []


def drifted(report: dict) -> tuple[list, list]:
    """(rows, failures) from the ansible.posix.json callback's report: a row per host and
    task that would change, a failure per host and task that failed or could not reach it."""
    rows, failures = [], []
    for play in report.get("plays", []):
        play_name = play.get("play", {}).get("name", "")
        for task in play.get("tasks", []):
            name = task.get("task", {}).get("name", "")
            for host, result in task.get("hosts", {}).items():
                if result.get("unreachable"):
                    failures.append({"host": host, "task": name, "msg": str(result.get("msg", "unreachable"))})
                elif result.get("failed") and not result.get("ignore_errors"):
                    failures.append({"host": host, "task": name, "msg": str(result.get("msg", "failed"))[:300]})
                elif result.get("changed"):
                    hidden = "censored" in result
                    lines = [] if hidden else diff_lines(result.get("diff", [])) or what_changes(result)
                    rows.append({"host": host, "play": play_name, "task": name, "diff": lines, "secret": hidden})
    return rows, failures


def fix_command(row: dict, inventory: str) -> str:
    role = row["task"].split(" : ", 1)[0] if " : " in row["task"] else ""
    tag = "db" if role == "app" and "database" in row["play"].lower() else role if role in STAGE_ROLES else ""
    return (f"ansible-playbook site.yml -i {shlex.quote(inventory)} --limit {shlex.quote(row['host'])}"
            + (f" --tags {tag}" if tag else ""))


def print_table(rows: list, failures: list, inventory: str, seconds: float) -> None:
    for row in rows:
        print(f"DRIFT  {row['host']}  {row['task']}")
        if row["secret"]:
            print("       (holds a secret: no diff shown)")
        for line in row["diff"]:
            print(f"       {line}")
        print(f"       fix: {fix_command(row, inventory)}")
    for failure in failures:
        print(f"ERROR  {failure['host']}  {failure['task']}: {failure['msg']}")
    hosts = sorted({row["host"] for row in rows})
    if failures:
        verdict = f"the check run failed on {', '.join(sorted({f['host'] for f in failures}))}"
    elif rows:
        verdict = f"{len(rows)} setting(s) drifted on {', '.join(hosts)}"
    else:
        verdict = "nothing drifted"
    print(f"drift: {verdict} ({seconds:.0f} s)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--inventory", required=True, help="inventory directory, e.g. inventories/prod")
    parser.add_argument("--vault-password-file", help="the inventory's vault password file")
    parser.add_argument("--playbook", default=str(REPO / "site.yml"), help="playbook checked (default site.yml)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    args, passthrough = parser.parse_known_args(argv)
    if not Path(args.inventory).exists():
        parser.error(f"the inventory {args.inventory} does not exist")

    playbook_bin = Path(sys.executable).parent / "ansible-playbook"
    cmd = [str(playbook_bin) if playbook_bin.exists() else "ansible-playbook", args.playbook,
           "-i", args.inventory, "--check", "--diff", "--skip-tags", "verify", *passthrough]
    if args.vault_password_file:
        cmd += ["--vault-password-file", args.vault_password_file]
    with tempfile.TemporaryDirectory(prefix="shipshape-drift-") as tmp:
        env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_CALLBACKS_ENABLED="ansible.posix.timer",
                   ANSIBLE_JSON_INDENT="0", ANSIBLE_LOCAL_TEMP=tmp, ANSIBLE_NOCOLOR="1",
                   ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        seconds = time.monotonic() - start
    try:
        # The report is one JSON object; the timer's line follows it.
        report, _ = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        print(f"drift: ansible-playbook exited {proc.returncode} without a report", file=sys.stderr)
        return 2
    rows, failures = drifted(report)
    if proc.returncode != 0 and not failures:
        failures.append({"host": "-", "task": "-", "msg": f"ansible-playbook exited {proc.returncode}: "
                                                          f"{proc.stderr.strip()[-300:]}"})
    if args.json:
        print(json.dumps({"drifted": rows, "failures": failures, "seconds": round(seconds, 1)}, indent=2))
    else:
        print_table(rows, failures, args.inventory, seconds)
    return 2 if failures else 1 if rows else 0


if __name__ == "__main__":
    sys.exit(main())
