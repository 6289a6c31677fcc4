"""The prune timer replaced the stale cron jobs: enabled, persistent, and its service runs
successfully and keeps images younger than the retention window."""

from conftest import INSTANCE, ok, sh

testinfra_hosts = [f"ansible://{INSTANCE}"]


def test_timer_is_enabled_and_waiting(host):
    timer = host.service("docker-prune.timer")
    assert timer.is_enabled
    assert timer.is_running
    assert ok("systemctl show -p NextElapseUSecRealtime --value docker-prune.timer") != ""


def test_timer_is_persistent(host):
    assert ok("systemctl show -p Persistent --value docker-prune.timer") == "yes"
    assert ok("systemctl show -p TimersCalendar --value docker-prune.timer").count("OnCalendar=") == 1


def test_service_prunes_with_the_retention_window():
    exec_start = ok("systemctl show -p ExecStart --value docker-prune.service")
    assert "image prune --force --filter until=168h" in exec_start
    assert "builder prune --force --filter until=168h" in exec_start


def test_service_runs_successfully_and_keeps_recent_images(web):
    # A dangling (untagged) image made now is inside the 168h window: it must survive.
    dangling = ok(f"docker commit {web}").removeprefix("sha256:")
    assert ok(f"docker image inspect --format '{{{{len .RepoTags}}}}' {dangling}") == "0"
    proc = sh("systemctl start docker-prune.service")
    assert proc.returncode == 0, ok("journalctl -u docker-prune.service --no-pager -n 20")
    assert ok("systemctl show -p Result --value docker-prune.service") == "success"
    assert sh(f"docker image inspect {dangling} >/dev/null").returncode == 0
    sh(f"docker image rm {dangling}")
