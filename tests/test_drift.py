"""scripts/drift.py's reading of a check-mode run: which tasks would change what, the fix
command, and that a task with a secret shows nothing of it. The report on a real server is
proven in tests/test_demo_operations.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import drift  # noqa: E402


def report(*tasks) -> dict:
    return {"plays": [{"play": {"name": play}, "tasks": [{"task": {"name": name}, "hosts": hosts}
                                                          for name, hosts in items]}
                      for play, items in tasks]}


def test_a_template_diff_shows_the_lines_that_differ_under_the_file_name():
    diff = [{"before": "a\nPasswordAuthentication yes\n", "after": "a\nPasswordAuthentication no\n",
             "before_header": "/etc/ssh/sshd_config", "after_header": "/tmp/x/sshd_config.j2"}]
    assert drift.diff_lines(diff) == ["--- /etc/ssh/sshd_config (server)", "+++ /etc/ssh/sshd_config (wanted)",
                                      "@@ -2 +2 @@", "-PasswordAuthentication yes", "+PasswordAuthentication no"]


def test_long_diffs_are_cut():
    diff = {"before": "\n".join(map(str, range(40))), "after": "", "before_header": "f"}
    lines = drift.diff_lines(diff)
    assert len(lines) == drift.DIFF_LINES + 1 and lines[-1].startswith("... (")


def test_rows_failures_and_what_a_task_without_diff_would_change():
    data = report(("Harden the server", [
        ("hardening : Write the kernel and network settings", {"demo": {"changed": True, "diff": [
            {"before": "x = 1\n", "after": "x = 0\n", "before_header": "/etc/sysctl.d/90-hardening.conf"}]}}),
        ("hardening : Read something", {"demo": {"changed": False}}),
    ]), ("Deploy the app", [
        ("app : Write the release's env file", {"demo": {"changed": True, "changed_files": ["/srv/ex/r/.env"]}}),
        ("app : Keep the live release running in its slot", {"demo": {"changed": True, "actions": [
            {"what": "container", "id": "ex-a-web-1", "status": "Starting"}]}}),
        ("app : Install the deploy key", {"demo": {"changed": True, "censored": "hidden"}}),
        ("ufw : Delete the rules nobody configured", {"demo": {"changed": True, "results": [
            {"changed": False, "_ansible_item_label": "ufw allow 80/tcp"},
            {"changed": True, "_ansible_item_label": "ufw allow 8080/tcp"}]}}),
        ("app : Start", {"web2": {"failed": True, "msg": "boom"}, "web3": {"unreachable": True, "msg": "no route"}}),
    ]))
    rows, failures = drift.drifted(data)
    assert [(r["task"], r["diff"][-1:] if r["diff"] else [], r["secret"]) for r in rows] == [
        ("hardening : Write the kernel and network settings", ["+x = 0"], False),
        ("app : Write the release's env file", ["differs: /srv/ex/r/.env"], False),
        ("app : Keep the live release running in its slot", ["container ex-a-web-1: Starting"], False),
        ("app : Install the deploy key", [], True),
        ("ufw : Delete the rules nobody configured", ["item: ufw allow 8080/tcp"], False),
    ]
    assert failures == [{"host": "web2", "task": "app : Start", "msg": "boom"},
                        {"host": "web3", "task": "app : Start", "msg": "no route"}]


def test_the_fix_runs_the_stage_of_the_task_on_its_host():
    row = {"host": "prod-web-1", "play": "Harden the server", "task": "hardening : Write x"}
    assert drift.fix_command(row, "inventories/prod") == (
        "ansible-playbook site.yml -i inventories/prod --limit prod-web-1 --tags hardening")
    db = {"host": "prod-db-1", "play": "Shared database host", "task": "app : Write the stateful files"}
    assert drift.fix_command(db, "inventories/prod").endswith("--tags db")
    assert drift.fix_command({"host": "h", "play": "p", "task": "no role"}, "i").endswith("--limit h")


def test_the_table_ends_with_a_verdict(capsys):
    drift.print_table([], [], "inventories/prod", 12.3)
    assert capsys.readouterr().out == "drift: nothing drifted (12 s)\n"
    drift.print_table([{"host": "h", "play": "p", "task": "ufw : Allow", "diff": [], "secret": True}], [],
                      "inventories/prod", 5)
    out = capsys.readouterr().out
    assert "DRIFT  h  ufw : Allow" in out and "(holds a secret: no diff shown)" in out
    assert "fix: ansible-playbook site.yml -i inventories/prod --limit h --tags ufw" in out
    assert out.endswith("drift: 1 setting(s) drifted on h (5 s)\n")


def test_a_missing_inventory_is_bad_usage(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        drift.main(["-i", str(tmp_path / "nope")])
    assert exc.value.code == 2
    assert "does not exist" in capsys.readouterr().err
