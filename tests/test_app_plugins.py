"""The Python plugins of the app role: the modules app_lock, app_ledger and app_state, the
app_lock action and the filters in app_release.

The pure functions are tested directly; the modules' file operations run on a temporary
directory; the modules also run as Ansible runs them (a JSON file of arguments), and once
all of them run under ansible-playbook against this machine.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "roles" / "app"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def load(name: str, relative: str):
    """Import a plugin file of the app role as a Python module (its main() does not run)."""
    spec = importlib.util.spec_from_file_location(name, APP / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The modules import the role's module_utils as Ansible ships them: ansible.module_utils.app_files.
utils_mod = sys.modules["ansible.module_utils.app_files"] = load("ansible.module_utils.app_files", "module_utils/app_files.py")
lock_mod = load("app_lock_module", "library/app_lock.py")
lock_act = load("app_lock_action", "action_plugins/app_lock.py")
ledger_mod = load("app_ledger_module", "library/app_ledger.py")
state_mod = load("app_state_module", "library/app_state.py")
filters = load("app_release_filters", "filter_plugins/app_release.py")


def run_module(relative: str, args: dict, tmp_path: Path, check_mode: bool = False) -> dict:
    """Run a module file as Ansible does (its arguments in a JSON file) and return its result."""
    args_file = tmp_path / "module-args.json"
    payload = dict(args)
    if check_mode:
        payload["_ansible_check_mode"] = True
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    # The module runs as a script, with the role's module_utils where Ansible puts them.
    runner = ("import importlib.util, runpy, sys\n"
              "spec = importlib.util.spec_from_file_location('ansible.module_utils.app_files', sys.argv[1])\n"
              "utils = importlib.util.module_from_spec(spec); spec.loader.exec_module(utils)\n"
              "sys.modules['ansible.module_utils.app_files'] = utils\n"
              "import ansible.module_utils; ansible.module_utils.app_files = utils\n"
              "sys.argv = sys.argv[2:]\n"
              "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", runner, str(APP / "module_utils/app_files.py"), str(APP / relative),
                           str(args_file)], capture_output=True, text=True, timeout=60, check=False)
    return json.loads(proc.stdout)


def dead_pid() -> int:
    """The id of a process that has just ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- app_lock module ----------------------------------------------------------------------

def test_take_creates_the_lock_whole_with_mode_0644_and_leaves_no_temporary_file(tmp_path):
    lock = tmp_path / "deploy.lock"
    content = '{"deployer": "alice@laptop", "epoch": 100}\n'
    result = lock_mod.take_lock(str(lock), content)
    assert result == {"taken": True, "exists": True, "holder": {"deployer": "alice@laptop", "epoch": 100},
                      "holder_raw": content}
    assert lock.read_text() == content
    assert stat.S_IMODE(lock.stat().st_mode) == 0o644
    assert lock.stat().st_nlink == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.lock"]


def test_a_second_take_fails_and_returns_the_holder(tmp_path):
    lock = tmp_path / "deploy.lock"
    first = '{"deployer": "alice", "pid": 1}'
    assert lock_mod.take_lock(str(lock), first)["taken"] is True
    second = lock_mod.take_lock(str(lock), '{"deployer": "bob", "pid": 2}')
    assert second["taken"] is False
    assert second["exists"] is True
    assert second["holder"] == {"deployer": "alice", "pid": 1}
    assert second["holder_raw"] == first
    assert lock.read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.lock"]


def test_of_many_takes_at_the_same_moment_exactly_one_wins(tmp_path):
    lock = tmp_path / "deploy.lock"
    start = threading.Barrier(16)
    results = {}

    def take(number):
        start.wait()
        results[number] = lock_mod.take_lock(str(lock), json.dumps({"n": number}))

    threads = [threading.Thread(target=take, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [n for n, result in results.items() if result["taken"]]
    assert len(winners) == 1
    assert json.loads(lock.read_text()) == {"n": winners[0]}
    assert all(result["holder"] == {"n": winners[0]} for result in results.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.lock"]


def test_release_with_another_content_leaves_the_lock(tmp_path):
    lock = tmp_path / "deploy.lock"
    lock_mod.take_lock(str(lock), '{"deployer": "alice"}')
    result = lock_mod.remove_lock_if(str(lock), '{"deployer": "bob"}')
    assert result["released"] is False
    assert result["holder"] == {"deployer": "alice"}
    assert lock.exists()


def test_release_with_the_exact_content_removes_the_lock(tmp_path):
    lock = tmp_path / "deploy.lock"
    content = '{"deployer": "alice"}\n'
    lock_mod.take_lock(str(lock), content)
    assert lock_mod.remove_lock_if(str(lock), content.strip())["released"] is False  # exactly, not about
    result = lock_mod.remove_lock_if(str(lock), content)
    assert result["released"] is True
    assert result["exists"] is False
    assert not lock.exists()
    assert lock_mod.remove_lock_if(str(lock), content)["released"] is False


def test_read_reports_a_missing_and_an_unparsable_lock(tmp_path):
    lock = tmp_path / "deploy.lock"
    assert lock_mod.read_lock(str(lock)) == {"exists": False, "holder": {}, "holder_raw": ""}
    lock.write_text("not json")
    assert lock_mod.read_lock(str(lock)) == {"exists": True, "holder": {}, "holder_raw": "not json"}
    lock.write_text("[1, 2]")
    assert lock_mod.read_lock(str(lock))["holder"] == {}


def test_take_without_the_directory_fails_with_a_clear_message(tmp_path):
    missing = tmp_path / "absent"
    with pytest.raises(lock_mod.LockError, match=f"its directory {missing} does not exist"):
        lock_mod.take_lock(str(missing / "deploy.lock"), "{}")
    assert not missing.exists()


def test_take_with_an_unknown_owner_fails_and_leaves_nothing(tmp_path):
    with pytest.raises(lock_mod.LockError, match="no user 'no-such-user-here'"):
        lock_mod.take_lock(str(tmp_path / "deploy.lock"), "{}", owner="no-such-user-here")
    assert list(tmp_path.iterdir()) == []


def test_take_in_check_mode_writes_nothing(tmp_path):
    lock = tmp_path / "deploy.lock"
    assert lock_mod.take_lock(str(lock), "{}", check_mode=True)["taken"] is False
    assert not lock.exists()
    lock_mod.take_lock(str(lock), "{}")
    assert lock_mod.remove_lock_if(str(lock), "{}", check_mode=True)["released"] is False
    assert lock.exists()


def test_the_lock_module_never_reports_a_change(tmp_path):
    lock = tmp_path / "deploy.lock"
    taken = run_module("library/app_lock.py", {"path": str(lock), "state": "take", "content": "{\"a\": 1}"}, tmp_path)
    assert taken["changed"] is False and taken["taken"] is True and taken["holder"] == {"a": 1}
    again = run_module("library/app_lock.py", {"path": str(lock), "state": "take", "content": "{}"}, tmp_path)
    assert again["changed"] is False and again["taken"] is False and again["holder_raw"] == "{\"a\": 1}"
    read = run_module("library/app_lock.py", {"path": str(lock), "state": "read"}, tmp_path)
    assert read["changed"] is False and read["exists"] is True
    gone = run_module("library/app_lock.py", {"path": str(lock), "state": "release", "expect": "{\"a\": 1}"}, tmp_path)
    assert gone["changed"] is False and gone["released"] is True
    assert not lock.exists()
    missing = run_module("library/app_lock.py", {"path": str(tmp_path / "x" / "l"), "state": "take", "content": "{}"},
                         tmp_path)
    assert missing["failed"] is True and "does not exist" in missing["msg"]


# --- app_lock action ----------------------------------------------------------------------

ME = {"controller": "laptop", "pid": 4242}
NOW = 1_800_000_000


def never_alive(pid):
    return False


def always_alive(pid):
    return True


def test_a_lock_older_than_the_limit_is_stale():
    held = {"controller": "other", "pid": 7, "epoch": NOW - 61 * 60}
    assert "older than 60 minutes" in lock_act.lock_is_stale(held, ME, NOW, 60, always_alive)
    assert lock_act.lock_is_stale({**held, "epoch": NOW - 60 * 60}, ME, NOW, 60, always_alive) is None


def test_a_lock_of_this_controller_whose_process_is_gone_is_stale():
    held = {"controller": "laptop", "pid": 7, "epoch": NOW - 10}
    asked = []

    def alive(pid):
        asked.append(pid)
        return False

    assert "no longer runs" in lock_act.lock_is_stale(held, ME, NOW, 60, alive)
    assert asked == [7]


def test_a_lock_of_this_controller_whose_process_runs_holds():
    held = {"controller": "laptop", "pid": 7, "epoch": NOW - 10}
    assert lock_act.lock_is_stale(held, ME, NOW, 60, always_alive) is None


def test_a_young_lock_of_another_controller_holds_whatever_its_pid():
    held = {"controller": "other", "pid": 7, "epoch": NOW - 10}
    assert lock_act.lock_is_stale(held, ME, NOW, 60, never_alive) is None


def test_a_lock_without_a_start_time_or_pid_is_judged_safely():
    assert lock_act.lock_is_stale({}, ME, NOW, 60, always_alive) is not None
    held = {"controller": "laptop", "pid": 0, "epoch": NOW}
    assert lock_act.lock_is_stale(held, ME, NOW, 60, never_alive) is None


def test_pid_alive_tells_a_running_process_from_an_ended_one():
    assert lock_act.pid_alive(os.getpid()) is True
    assert lock_act.pid_alive(dead_pid()) is False


def test_the_holder_records_who_where_which_process_since_when_and_what():
    now = datetime.datetime(2026, 12, 6, 15, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    holder = lock_act.build_holder("alice@laptop", "v1.2", "laptop", 4242, now)
    assert holder == {"deployer": "alice@laptop", "controller": "laptop", "pid": 4242,
                      "started": "2026-12-06T14:01:02Z", "epoch": 1796565662, "version": "v1.2"}


def test_the_default_deployer_is_user_at_host():
    user, _, host = lock_act.default_deployer().partition("@")
    assert user and host


def test_the_busy_message_names_the_holder_and_the_ways_out():
    held = {"deployer": "bob@box", "controller": "box", "pid": 77, "version": "main",
            "started": "2026-12-06T13:00:00Z"}
    assert lock_act.busy_message("/srv/x/deploy.lock", "web1", held, 60, 30) == (
        "Another deploy holds the deploy lock /srv/x/deploy.lock on web1: bob@box from box "
        "(ansible-playbook pid 77), deploying version 'main' since 2026-12-06T13:00:00Z. Waited 60 seconds "
        "(app_lock_wait). Run again when it has finished. When that deploy is gone, the lock is removed by "
        "itself after 30 minutes (app_lock_stale_minutes), or at once when it ran from this controller; or "
        "remove /srv/x/deploy.lock on the server by hand.")
    assert "bob@box from ? (ansible-playbook pid ?)" in lock_act.busy_message("/l", "h", {"deployer": "bob@box"}, 1, 1)


def test_the_stale_message_names_the_removed_holder():
    held = {"deployer": "bob@box", "controller": "box", "started": "2026-12-06T10:00:00Z"}
    assert lock_act.stale_message("/srv/x/deploy.lock", held, 60) == (
        "Removed a stale deploy lock (/srv/x/deploy.lock) held by bob@box from box since "
        "2026-12-06T10:00:00Z: that deploy is gone (its ansible-playbook no longer runs, or the lock is "
        "older than 60 minutes).")


def test_lock_is_mine_needs_the_same_controller_and_pid():
    assert lock_act.lock_is_mine({"controller": "laptop", "pid": 4242}, ME)
    assert not lock_act.lock_is_mine({"controller": "laptop", "pid": 4243}, ME)
    assert not lock_act.lock_is_mine({"controller": "other", "pid": 4242}, ME)
    assert not lock_act.lock_is_mine({}, {"controller": None, "pid": None})


class LocalLock:
    """Runs the app_lock module's operations on a local file, as the action would remotely."""

    def __init__(self):
        self.calls = []

    def __call__(self, args):
        self.calls.append(args["state"])
        try:
            if args["state"] == "take":
                return lock_mod.take_lock(args["path"], args["content"], args.get("owner"), args.get("group"))
            if args["state"] in ("release", "remove_if"):
                return lock_mod.remove_lock_if(args["path"], args["expect"])
            return lock_mod.read_lock(args["path"])
        except (lock_mod.LockError, OSError) as exc:
            return {"failed": True, "msg": f"deploy lock {args['path']}: {exc}"}


class FakeTime:
    """A clock that moves only when the code sleeps."""

    def __init__(self):
        self.now = 1000.0
        self.slept = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def holder_of(deployer, controller, pid, epoch):
    return {"deployer": deployer, "controller": controller, "pid": pid, "epoch": epoch,
            "started": "2026-12-06T13:00:00Z", "version": "v1"}


def test_acquire_takes_a_free_lock_at_once(tmp_path):
    lock, fake, run = tmp_path / "deploy.lock", FakeTime(), LocalLock()
    me = holder_of("alice", "laptop", 4242, NOW)
    outcome = lock_act.acquire(run, str(lock), me, 60, 60, sleep=fake.sleep, clock=fake.clock, now_epoch=lambda: NOW)
    assert outcome["taken"] is True and outcome["mine"] is False and outcome["stale_removed"] is None
    assert outcome["held"] == me
    assert json.loads(lock.read_text()) == me
    assert fake.slept == [] and run.calls == ["take"]


def test_acquire_waits_for_a_live_lock_and_gives_up_after_wait(tmp_path):
    lock, fake, run = tmp_path / "deploy.lock", FakeTime(), LocalLock()
    other = holder_of("bob", "box", 77, NOW - 30)
    lock.write_text(json.dumps(other))
    me = holder_of("alice", "laptop", 4242, NOW)
    outcome = lock_act.acquire(run, str(lock), me, 12, 60, pid_alive=never_alive,
                               sleep=fake.sleep, clock=fake.clock, now_epoch=lambda: NOW)
    assert outcome["taken"] is False and outcome["failed"] is False
    assert outcome["held"] == other
    assert fake.slept == [5, 5, 2]
    assert run.calls == ["take"] * 4
    assert json.loads(lock.read_text()) == other


def test_acquire_takes_the_lock_once_the_other_deploy_releases_it(tmp_path):
    lock, fake, run = tmp_path / "deploy.lock", FakeTime(), LocalLock()
    lock.write_text(json.dumps(holder_of("bob", "box", 77, NOW)))
    me = holder_of("alice", "laptop", 4242, NOW)

    def sleep(seconds):
        fake.sleep(seconds)
        lock.unlink()  # the other deploy finishes while this one waits

    outcome = lock_act.acquire(run, str(lock), me, 60, 60, sleep=sleep, clock=fake.clock, now_epoch=lambda: NOW)
    assert outcome["taken"] is True and outcome["held"] == me and fake.slept == [5]


def test_acquire_removes_a_stale_lock_and_takes_it_at_once(tmp_path):
    lock, fake, run = tmp_path / "deploy.lock", FakeTime(), LocalLock()
    old = holder_of("bob", "box", 77, NOW - 2 * 3600)
    lock.write_text(json.dumps(old))
    me = holder_of("alice", "laptop", 4242, NOW)
    outcome = lock_act.acquire(run, str(lock), me, 60, 60, sleep=fake.sleep, clock=fake.clock, now_epoch=lambda: NOW)
    assert outcome["taken"] is True and outcome["held"] == me
    assert outcome["stale_removed"] == old
    assert outcome["stale_message"].startswith("Removed a stale deploy lock (" + str(lock) + ") held by bob from box")
    assert fake.slept == [] and run.calls == ["take", "remove_if", "take"]


def test_acquire_removes_the_lock_of_a_dead_run_of_this_controller(tmp_path):
    lock, fake, run = tmp_path / "deploy.lock", FakeTime(), LocalLock()
    lock.write_text(json.dumps(holder_of("alice", "laptop", 99, NOW - 5)))
    me = holder_of("alice", "laptop", 4242, NOW)
    outcome = lock_act.acquire(run, str(lock), me, 60, 60, pid_alive=never_alive,
                               sleep=fake.sleep, clock=fake.clock, now_epoch=lambda: NOW)
    assert outcome["taken"] is True and outcome["stale_removed"]["pid"] == 99
    assert json.loads(lock.read_text())["pid"] == 4242


def test_acquire_accepts_the_lock_this_run_already_holds(tmp_path):
    lock, fake, run = tmp_path / "deploy.lock", FakeTime(), LocalLock()
    earlier = holder_of("alice", "laptop", 4242, NOW - 100)
    lock.write_text(json.dumps(earlier))
    outcome = lock_act.acquire(run, str(lock), holder_of("alice", "laptop", 4242, NOW), 60, 60,
                               pid_alive=always_alive, sleep=fake.sleep, clock=fake.clock, now_epoch=lambda: NOW)
    assert outcome["taken"] is True and outcome["mine"] is True and outcome["held"] == earlier
    assert fake.slept == []


def test_acquire_reports_a_module_failure(tmp_path):
    fake = FakeTime()
    outcome = lock_act.acquire(LocalLock(), str(tmp_path / "gone" / "deploy.lock"), holder_of("a", "l", 1, NOW),
                               60, 60, sleep=fake.sleep, clock=fake.clock)
    assert outcome["failed"] is True and "does not exist" in outcome["msg"] and fake.slept == []


def test_release_removes_only_the_lock_of_this_run(tmp_path):
    lock, run = tmp_path / "deploy.lock", LocalLock()
    lock.write_text(json.dumps(holder_of("bob", "box", 4242, NOW)))
    result = lock_act.release(run, str(lock), ME)
    assert result["released"] is False and "held by another deploy" in result["msg"] and lock.exists()
    lock.write_text(json.dumps(holder_of("alice", "laptop", 4242, NOW)))
    result = lock_act.release(run, str(lock), ME)
    assert result["released"] is True and not lock.exists()
    assert run.calls[-2:] == ["read", "remove_if"]
    assert lock_act.release(run, str(lock), ME)["released"] is False


def make_action(args: dict, check_mode: bool = False):
    """The app_lock action with a task of these arguments; its module runs locally."""
    task = SimpleNamespace(args=args, async_val=0, check_mode=check_mode, action="app_lock")
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None))
    action = lock_act.ActionModule(task, connection, None, None, None)
    local = LocalLock()
    action._execute_module = lambda module_name, module_args, task_vars: local(module_args)
    action.sleep = lambda seconds: None
    return action, local


def test_the_action_takes_and_releases_the_lock_without_reporting_a_change(tmp_path):
    lock = tmp_path / "deploy.lock"
    action, _ = make_action({"path": str(lock), "version": "v3", "deployer": "carol"})
    result = action.run(task_vars={"inventory_hostname": "web1"})
    assert result.get("failed") is not True and result["changed"] is False
    held = json.loads(lock.read_text())
    assert held["deployer"] == "carol" and held["version"] == "v3" and held["pid"] == os.getppid()
    assert result["lock"] == held and result["stale_removed"] is None
    action, local = make_action({"path": str(lock), "state": "absent"})
    result = action.run(task_vars={"inventory_hostname": "web1"})
    assert result["released"] is True and result["changed"] is False and not lock.exists()


def test_the_action_fails_with_the_busy_message_when_the_wait_is_over(tmp_path):
    lock = tmp_path / "deploy.lock"
    lock.write_text(json.dumps(holder_of("bob@box", "box", 77, int(datetime.datetime.now().timestamp()))))
    action, _ = make_action({"path": str(lock), "wait": 0, "stale_minutes": 30})
    result = action.run(task_vars={"inventory_hostname": "web1"})
    assert result["failed"] is True
    assert result["msg"].startswith(f"Another deploy holds the deploy lock {lock} on web1: bob@box from box")
    assert "Waited 0 seconds (app_lock_wait)" in result["msg"] and "after 30 minutes" in result["msg"]


def test_the_action_does_nothing_in_check_mode(tmp_path):
    lock = tmp_path / "deploy.lock"
    action, local = make_action({"path": str(lock)}, check_mode=True)
    result = action.run(task_vars={})
    assert result["msg"] == "check mode: the deploy lock is not taken"
    assert result["changed"] is False and local.calls == [] and not lock.exists()


# --- app_ledger ---------------------------------------------------------------------------

def entry(result="success", commit="c1", image_id="i1", env="e1", **more):
    return {"result": result, "commit": commit, "image_id": image_id, "env_sha256": env, **more}


SAME = ["commit", "image_id", "env_sha256"]


def test_ledger_append_adds_a_sorted_json_line():
    lines, appended = ledger_mod.ledger_append([], {"result": "success", "b": 1, "a": 2}, 200, SAME)
    assert appended is True
    assert lines == ['{"a": 2, "b": 1, "result": "success"}']


def test_a_successful_rerun_of_the_same_deploy_adds_no_line():
    lines, _ = ledger_mod.ledger_append([], entry(time="t1"), 200, SAME)
    again, appended = ledger_mod.ledger_append(lines, entry(time="t2"), 200, SAME)
    assert appended is False and again == lines
    newer, appended = ledger_mod.ledger_append(lines, entry(commit="c2"), 200, SAME)
    assert appended is True and len(newer) == 2


def test_the_comparison_is_with_the_last_successful_line():
    lines, _ = ledger_mod.ledger_append([], entry(), 200, SAME)
    lines, _ = ledger_mod.ledger_append(lines, entry(result="failure", commit="c9"), 200, SAME)
    lines.append("this line is not json")
    same, appended = ledger_mod.ledger_append(lines, entry(), 200, SAME)
    assert appended is False and same == lines
    lines, _ = ledger_mod.ledger_append(lines, entry(commit="c2"), 200, SAME)
    back, appended = ledger_mod.ledger_append(lines, entry(), 200, SAME)
    assert appended is True and json.loads(back[-1])["commit"] == "c1"
    assert "this line is not json" in back


def test_a_failure_is_always_added():
    lines, _ = ledger_mod.ledger_append([], entry(result="failure"), 200, SAME)
    lines, appended = ledger_mod.ledger_append(lines, entry(result="failure"), 200, SAME)
    assert appended is True and len(lines) == 2


def test_without_same_keys_every_entry_is_new():
    lines, _ = ledger_mod.ledger_append([], entry(), 200, [])
    lines, appended = ledger_mod.ledger_append(lines, entry(), 200, [])
    assert appended is True and len(lines) == 2


def test_keep_trims_the_oldest_lines():
    lines = []
    for number in range(5):
        lines, _ = ledger_mod.ledger_append(lines, entry(commit=f"c{number}"), 3, SAME)
    assert [json.loads(line)["commit"] for line in lines] == ["c2", "c3", "c4"]
    with pytest.raises(ValueError):
        ledger_mod.ledger_append(lines, entry(), 0, SAME)


def test_write_atomic_replaces_the_file_with_mode_0640_whatever_the_umask(tmp_path):
    ledger = tmp_path / "releases.jsonl"
    ledger.write_text("old\n")
    os.chmod(ledger, 0o666)
    previous = os.umask(0o077)
    try:
        utils_mod.write_atomic(str(ledger), "a\nb\n", 0o640)
    finally:
        os.umask(previous)
    assert ledger.read_text() == "a\nb\n"
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["releases.jsonl"]


def test_read_ledger_skips_blank_lines_and_a_missing_file_is_empty(tmp_path):
    ledger = tmp_path / "releases.jsonl"
    assert ledger_mod.read_ledger(str(ledger)) == []
    ledger.write_text('{"a": 1}\n\n  \nbroken\n')
    assert ledger_mod.read_ledger(str(ledger)) == ['{"a": 1}', "broken"]


def test_parse_mode_takes_octal_text_and_yaml_numbers():
    assert utils_mod.parse_mode("0640") == 0o640
    assert utils_mod.parse_mode(0o640) == 0o640
    with pytest.raises(ValueError):
        utils_mod.parse_mode("u=rw")


def test_the_ledger_module_appends_reports_and_honours_check_mode(tmp_path):
    ledger = tmp_path / "releases.jsonl"
    args = {"path": str(ledger), "entry": entry(), "keep": 5}
    dry = run_module("library/app_ledger.py", args, tmp_path, check_mode=True)
    assert dry["changed"] is True and dry["appended"] is True and not ledger.exists()
    first = run_module("library/app_ledger.py", args, tmp_path)
    assert first["changed"] is True and first["lines"] == 1
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o640
    rerun = run_module("library/app_ledger.py", args, tmp_path)
    assert rerun["changed"] is False and rerun["appended"] is False and rerun["lines"] == 1
    os.chmod(ledger, 0o644)
    fixed = run_module("library/app_ledger.py", args, tmp_path)
    assert fixed["changed"] is True and fixed["appended"] is False
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o640
    assert [json.loads(line) for line in ledger.read_text().splitlines()] == [entry()]


# --- app_state ----------------------------------------------------------------------------

def release_dir(root: Path, release_id: str, mtime: float, info: dict | None):
    path = root / "releases" / release_id
    path.mkdir(parents=True)
    if info is not None:
        (path / "release.json").write_text(json.dumps({"id": release_id, **info}))
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def app_root(tmp_path):
    """An app directory: three releases (one without release.json), current, two slots, a ledger."""
    root = tmp_path / "srv"
    release_dir(root, "20261201T100000Z-aaaaaaaaaaaa", 1000.0,
                {"commit": "a" * 40, "version": "v1", "image": "example-web:aaa", "image_id": "sha256:1",
                 "fingerprint": "f1"})
    release_dir(root, "20261202T100000Z-bbbbbbbbbbbb", 3000.0,
                {"commit": "b" * 40, "version": "1.1", "image": "example-web:bbb", "image_id": "sha256:2",
                 "fingerprint": "f2", "services": ["web", "worker"]})
    release_dir(root, "20261203T100000Z-cccccccccccc", 2000.0, None)
    (root / "releases" / "stray-file").write_text("x")
    (root / "current").symlink_to("releases/20261202T100000Z-bbbbbbbbbbbb")
    (root / "slots").mkdir()
    (root / "slots" / "a").symlink_to("../releases/20261201T100000Z-aaaaaaaaaaaa")
    (root / "slots" / "b").symlink_to("../releases/20261202T100000Z-bbbbbbbbbbbb/")
    (root / "slots" / "a.env").write_text("APP_PORT=8000\n")
    ledger = [{"result": "success", "release": "20261201T100000Z-aaaaaaaaaaaa"}, "garbage",
              {"result": "success", "release": "20261202T100000Z-bbbbbbbbbbbb"}]
    (root / "releases.jsonl").write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in ledger) + "\n")
    return root


PS = {
    "example-a": "web\texited\tExited (0) 2 minutes ago\nworker\texited\tExited (0) 2 minutes ago\n",
    "example-b": "web\trunning\tUp 3 minutes (healthy)\nworker\trunning\tUp 3 minutes (health: starting)\n"
                 "migrate\texited\tExited (0) 3 minutes ago\n",
    "example-data": "db\trunning\tUp 1 hour (healthy)\ncache\trunning\tUp 1 hour\n",
}


def test_describe_reads_releases_current_slots_and_ledger(app_root):
    state = state_mod.describe(str(app_root), {"a": "example-a", "b": "example-b"}, "web", PS.get)
    assert state["current"]["version"] == "1.1"
    assert state["current_id"] == "20261202T100000Z-bbbbbbbbbbbb"
    assert [r["id"] for r in state["releases"]] == ["20261201T100000Z-aaaaaaaaaaaa", "20261202T100000Z-bbbbbbbbbbbb",
                                                   "20261203T100000Z-cccccccccccc"]
    first, _, bare = state["releases"]
    assert first == {"id": "20261201T100000Z-aaaaaaaaaaaa", "path": str(app_root / "releases" / first["id"]),
                     "mtime": 1000.0, "image": "example-web:aaa", "image_id": "sha256:1", "commit": "a" * 40,
                     "version": "v1", "fingerprint": "f1"}
    assert set(bare) == {"id", "path", "mtime"} and bare["mtime"] == 2000.0
    assert state["releases"][1]["services"] == ["web", "worker"] and "services" not in first
    assert state["slots"] == {
        "a": {"release": "20261201T100000Z-aaaaaaaaaaaa", "containers": 2, "running": 0, "web_running": False,
              "ready": []},
        "b": {"release": "20261202T100000Z-bbbbbbbbbbbb", "containers": 3, "running": 2, "web_running": True,
              "ready": ["web"]},
    }
    assert state["stateful"] == {}
    assert (state["live_slot"], state["idle_slot"]) == ("b", "a")
    assert [e["release"] for e in state["ledger"]] == ["20261201T100000Z-aaaaaaaaaaaa", "20261202T100000Z-bbbbbbbbbbbb"]
    assert state["docker"] is True


def test_describe_without_docker_counts_nothing(app_root):
    state = state_mod.describe(str(app_root), {"a": "example-a", "b": "example-b"}, "web", lambda project: None)
    assert state["docker"] is False
    assert all(slot["containers"] == 0 and slot["running"] == 0 and not slot["web_running"]
               for slot in state["slots"].values())
    assert state["live_slot"] == "b"  # only slot b runs the current release


def test_describe_an_empty_root(tmp_path):
    state = state_mod.describe(str(tmp_path), {"a": "x-a", "b": "x-b"}, "web", lambda project: "")
    assert state["current"] == {} and state["current_id"] == "" and state["releases"] == []
    assert state["slots"]["a"]["release"] == "" and state["ledger"] == []
    assert (state["live_slot"], state["idle_slot"]) == ("", "a")


def test_the_current_id_falls_back_to_the_link(tmp_path):
    release_dir(tmp_path, "r1", 1.0, None)
    (tmp_path / "current").symlink_to("releases/r1")
    assert state_mod.describe(str(tmp_path), {}, "web", PS.get)["current_id"] == "r1"


def test_parse_ps_counts_containers_and_finds_the_running_web_service():
    assert state_mod.parse_ps("web\trunning\tUp 1 second\nworker\texited\tExited (1)\n\n", "web") == {
        "containers": 2, "running": 1, "web_running": True, "ready": ["web"]}
    assert state_mod.parse_ps("web\trestarting\tRestarting (1)\nworker\trunning\tUp 2 hours (healthy)\n", "web") == {
        "containers": 2, "running": 1, "web_running": False, "ready": ["worker"]}
    assert state_mod.parse_ps("", "web") == {"containers": 0, "running": 0, "web_running": False, "ready": []}


def test_a_running_container_that_fails_or_has_not_passed_its_health_check_is_not_ready():
    out = "web\trunning\tUp 1 minute (unhealthy)\nworker\trunning\tUp 2 seconds (health: starting)\n"
    assert state_mod.parse_ps(out, "web") == {"containers": 2, "running": 2, "web_running": True, "ready": []}


def test_ps_argv_asks_for_the_service_state_and_status_of_every_container_of_the_project():
    assert state_mod.ps_argv("example-a") == [
        "ps", "-a", "--filter", "label=com.docker.compose.project=example-a",
        "--format", '{{.Label "com.docker.compose.service"}}\t{{.State}}\t{{.Status}}']


def test_the_stateful_project_is_described_like_a_slot(app_root):
    state = state_mod.describe(str(app_root), {"a": "example-a", "b": "example-b"}, "web", PS.get, "example-data")
    assert state["stateful"] == {"containers": 2, "running": 2, "web_running": False, "ready": ["cache", "db"]}
    assert state["docker"] is True
    without_docker = state_mod.describe(str(app_root), {}, "web", lambda project: None, "example-data")
    assert without_docker["stateful"]["ready"] == [] and without_docker["docker"] is False


def test_parse_images_keeps_the_wanted_images_the_engine_has():
    out = "postgres:17\nexample-web:abc\n<none>:<none>\nregistry.local:5000/tools:latest\n"
    assert state_mod.parse_images(out, ["example-web:abc", "redis:7", "postgres:17", "postgres"]) == [
        "example-web:abc", "postgres:17"]
    assert state_mod.parse_images(out, ["registry.local:5000/tools", "registry.local:5000/other"]) == [
        "registry.local:5000/tools"]


@pytest.mark.parametrize("a, b, live, idle", [
    ({"release": "r2", "web_running": False}, {"release": "r1", "web_running": True}, "a", "b"),
    ({"release": "r2", "web_running": False}, {"release": "r2", "web_running": True}, "b", "a"),
    ({"release": "r2", "web_running": True}, {"release": "r2", "web_running": True}, "", "a"),
    ({"release": "r1", "web_running": True}, {"release": "", "web_running": True}, "", "a"),
])
def test_pick_slots(a, b, live, idle):
    assert state_mod.pick_slots({"a": a, "b": b}, "r2") == (live, idle)


def test_parse_ledger_skips_what_is_not_an_object_and_keeps_the_last_200():
    text = "\n".join([json.dumps({"n": n}) for n in range(250)] + ["[1]", "nope", ""])
    entries = state_mod.parse_ledger(text)
    assert len(entries) == 200 and entries[0] == {"n": 50} and entries[-1] == {"n": 249}


def test_the_state_module_runs_read_only(app_root, tmp_path):
    before = sorted(str(p) for p in app_root.rglob("*"))
    result = run_module("library/app_state.py", {"root": str(app_root), "projects": {"a": "example-a", "b": "example-b"}},
                        tmp_path, check_mode=True)
    assert result["changed"] is False
    assert result["current_id"] == "20261202T100000Z-bbbbbbbbbbbb"
    assert isinstance(result["docker"], bool)
    assert sorted(str(p) for p in app_root.rglob("*")) == before
    # The commands the deploy needs: those not on the PATH are named.
    result = run_module("library/app_state.py", {"root": str(app_root), "projects": {},
                                                 "commands": ["sh", "no-such-command-here"]}, tmp_path)
    assert result["commands_missing"] == ["no-such-command-here"]
    assert result["network_exists"] is False and result["images_present"] == []


# --- filters: releases --------------------------------------------------------------------

def rb_state(current, ids, served=()):
    return {"current_id": current, "releases": [{"id": i} for i in ids],
            "ledger": [{"result": "success", "release": s} for s in served]}


def test_rollback_goes_to_the_release_that_served_before():
    state = rb_state("r3", ["r1", "r2", "r3"], served=["r1", "r3", "r2", "r3"])
    state["ledger"].append({"result": "failure", "release": "r1"})
    assert filters.app_rollback_target(state) == {"id": "r2", "error": ""}


def test_a_second_rollback_goes_forward_again():
    state = rb_state("r2", ["r1", "r2", "r3"], served=["r2", "r3", "r2"])
    assert filters.app_rollback_target(state)["id"] == "r3"


def test_without_a_ledger_the_rollback_goes_to_the_newest_older_release():
    assert filters.app_rollback_target(rb_state("r3", ["r1", "r2", "r3", "r4"])) == {"id": "r2", "error": ""}
    served_but_gone = rb_state("r3", ["r1", "r3"], served=["r2", "r3"])
    assert filters.app_rollback_target(served_but_gone)["id"] == "r1"


def test_a_requested_release_wins():
    assert filters.app_rollback_target(rb_state("r3", ["r1", "r2", "r3"], ["r2", "r3"]), "r1") == {
        "id": "r1", "error": ""}


def test_rollback_errors_say_why_and_list_the_releases():
    assert filters.app_rollback_target(rb_state("", []), root="/srv/x") == {
        "id": "", "error": "no release serves yet (/srv/x/current is missing). Releases on the server: none."}
    assert filters.app_rollback_target(rb_state("r2", ["r1", "r2"]), "r2")["error"] == (
        "r2 already serves. Releases on the server: r1, r2.")
    assert filters.app_rollback_target(rb_state("r2", ["r1", "r2"]), "r9")["error"] == (
        "there is no release 'r9' (app_rollback_to). Releases on the server: r1, r2.")
    assert filters.app_rollback_target(rb_state("r1", ["r1", "r2"])) == {
        "id": "", "error": "no release older than the current one (r1). Releases on the server: r1, r2."}


FILES_CURRENT = ["/srv/x/releases/r2/notes/migrations/0001_initial.py",
                 "/srv/x/releases/r2/notes/migrations/0002_add_x.py",
                 "/srv/x/releases/r2/notes/migrations/__init__.py",
                 "/srv/x/releases/r2/shop/migrations/0001_initial.py",
                 "/srv/x/releases/r2/notes/views.py"]
FILES_TARGET = ["/srv/x/releases/r1/notes/migrations/0001_initial.py",
                {"path": "/srv/x/releases/r1/notes/migrations/__init__.py"}]


def test_schema_unknown_lists_applied_migrations_of_the_apps_the_target_lacks():
    applied = ["auth.0001_initial", "notes.0001_initial", "notes.0002_add_x", "shop.0001_initial",
               "notes.0002_add_x", "admin.0003_x"]
    assert filters.app_schema_unknown(applied, FILES_CURRENT, FILES_TARGET) == [
        "notes.0002_add_x", "shop.0001_initial"]


def test_schema_unknown_is_empty_when_the_code_has_no_migrations_or_the_target_knows_them():
    assert filters.app_schema_unknown(["notes.0001_initial"], [], []) == []
    assert filters.app_schema_unknown(["notes.0001_initial", "auth.0001_x"], FILES_CURRENT, FILES_CURRENT) == []


def test_schema_unknown_takes_another_file_pattern():
    found = filters.app_schema_unknown(["db.0002"], ["/r/db/0001.sql"], ["/r/db/0001.sql"], r"^.*/(db)/([^/]+)\.sql$")
    assert found == ["db.0002"]


def rel(release_id, mtime, image):
    return {"id": release_id, "mtime": mtime, "image": image}


def test_retention_keeps_the_newest_and_the_protected():
    releases = [rel("r1", 1, "img:1"), rel("r2", 2, "img:2"), rel("r3", 3, "img:3"), rel("r4", 5, "img:4"),
                rel("r5", 4, "img:5")]
    assert filters.app_retention(releases, 2, "r4") == {"remove": ["r1", "r2", "r3"], "images": ["img:1", "img:2", "img:3"]}
    assert filters.app_retention(releases, 2, "r1", ["r2"]) == {"remove": ["r3"], "images": ["img:3"]}
    assert filters.app_retention(releases, 10, "r1") == {"remove": [], "images": []}


def test_retention_keeps_images_a_kept_release_uses():
    releases = [rel("r1", 1, "img:same"), rel("r2", 2, "img:same"), rel("r3", 3, "img:3"), rel("r4", 4, "")]
    assert filters.app_retention(releases, 1, "r4") == {"remove": ["r1", "r2", "r3"], "images": ["img:same", "img:3"]}
    assert filters.app_retention(releases, 1, "r2") == {"remove": ["r1", "r3"], "images": ["img:3"]}


# --- filters: the app's environment --------------------------------------------------------

def test_env_file_quotes_values_and_secrets_win():
    text = filters.app_env_file({"B": "plain", "A": 1, "C": True, "D": None, "S": "not this"},
                                {"S": "secret", "E": False}, header="Written by Ansible.\n# already a comment")
    assert text == ("# Written by Ansible.\n# already a comment\n"
                    "A='1'\nB='plain'\nC='true'\nD=''\nE='false'\nS='secret'\n")
    assert filters.app_env_file({}, {}) == ""


def test_env_problems_finds_names_quotes_and_placeholders():
    env = {"GOOD": "x", "1BAD": "x", "MULTI": "a\nb", "QUOTE": "it's", "PLAIN": " Change_Me ", "NUM": 5}
    secrets = {"PW": "todo", "NONE": None, "OK": "s3cret", "EMPTY": "  ", "TOKEN": "CR\r"}
    assert filters.app_env_problems(env, secrets, ["", "change_me", "TODO"]) == {
        "invalid_names": ["1BAD"],
        "unquotable": ["MULTI", "QUOTE", "TOKEN"],
        "placeholders": ["EMPTY", "NONE", "PLAIN", "PW"],
    }
    assert filters.app_env_problems({"A": "a"}, {"B": "b"}, ["todo"]) == {
        "invalid_names": [], "unquotable": [], "placeholders": []}


def test_env_missing_reads_the_keys_of_an_example_file():
    example = ("# Comment: NOT_A_KEY=1\nDEBUG=0\n  export SECRET_KEY=\nDATABASE_URL = postgres://\n"
               "DEBUG=1\nnot a line\n#COMMENTED=1\n")
    assert filters.app_env_missing(example, ["DEBUG"]) == ["DATABASE_URL", "SECRET_KEY"]
    assert filters.app_env_missing(example, {"DEBUG": 1, "SECRET_KEY": 2, "DATABASE_URL": 3}) == []


def test_env_subset_keeps_the_keys_asked_for():
    assert filters.app_env_subset({"POSTGRES_USER": "u", "SECRET_KEY": "s", "POSTGRES_DB": "d"},
                                  ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"]) == {
        "POSTGRES_USER": "u", "POSTGRES_DB": "d"}


def test_mask_replaces_secrets_longest_first():
    secrets = {"A": "hunter2", "B": "hunter2-extended", "C": "abc", "D": 12345}
    assert filters.app_mask("pw hunter2-extended and hunter2, abc 12345", secrets) == (
        "pw ******** and ********, abc 12345")
    assert filters.app_mask("x s3cr3t y", ["s3cr3t"]) == "x ******** y"


# --- filters: hooks -----------------------------------------------------------------------

def test_valid_hooks_have_no_errors():
    hooks = {"before_switch": [{"name": "migrate", "argv": ["python3", "manage.py", "migrate"],
                                "unless": ["python3", "manage.py", "migrate", "--check"], "dump": True}],
             "after_switch": [{"name": "admin", "argv": ["python3", "manage.py", "ensure_superuser"],
                               "changed_when": "created"}]}
    assert filters.app_hooks_errors(hooks) == []
    assert filters.app_hooks_errors({"before_switch": [], "after_switch": []}) == []


def test_hook_errors_name_the_hook():
    hooks = {
        "before_switch": [
            {"name": "migrate", "argv": "python3 manage.py migrate", "dump": "yes", "retries": 3},
            {"argv": ["true"], "unless": [], "changed_when": 1},
            "not a hook",
        ],
        "after_switch": {"name": "x"},
        "before_start": [],
    }
    errors = filters.app_hooks_errors(hooks)
    assert errors == [
        "app_hooks.before_start: unknown hook point (the points are before_switch and after_switch).",
        "app_hooks.before_switch[0] (migrate): unknown key(s) retries (a hook has name, argv, unless, dump, "
        "changed_when).",
        "app_hooks.before_switch[0] (migrate): argv must be a non-empty list of strings, not a string.",
        "app_hooks.before_switch[0] (migrate): dump must be true or false, not a string.",
        "app_hooks.before_switch[1]: name is missing (a non-empty string).",
        "app_hooks.before_switch[1]: unless must be a non-empty list of strings, not a list.",
        "app_hooks.before_switch[1]: changed_when must be a string (text in the hook's output), not a number.",
        "app_hooks.before_switch[2] must be a mapping (name, argv, unless, dump, changed_when), not a string.",
        "app_hooks.after_switch must be a list of hooks, not a mapping.",
    ]
    assert filters.app_hooks_errors(None) == [
        "app_hooks must be a mapping with the keys before_switch and after_switch, not null."]
    assert filters.app_hooks_errors({"after_switch": [{"name": " ", "argv": ["a", 1]}]}) == [
        "app_hooks.after_switch[0]: name is empty.",
        "app_hooks.after_switch[0]: argv must be a list of strings; item 1 is a number.",
    ]


def test_the_filter_plugin_offers_every_filter():
    assert set(filters.FilterModule().filters()) == {
        "app_rollback_target", "app_schema_unknown", "app_retention", "app_env_file", "app_env_problems",
        "app_env_missing", "app_env_subset", "app_mask", "app_hooks_errors", "app_compose_services", "app_notification"}


# --- under ansible-playbook ---------------------------------------------------------------

PLAYBOOK = """
- name: Use the app role's plugins
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Take the deploy lock
      app_lock:
        path: "{{ root }}/deploy.lock"
        version: v7
        wait: 0
      register: took

    - name: Take it again in the same run
      app_lock:
        path: "{{ root }}/deploy.lock"
        wait: 0
      register: again

    - name: Add to the ledger
      app_ledger:
        path: "{{ root }}/releases.jsonl"
        entry: {result: success, release: r1, commit: c1}
      register: ledger

    - name: Read the state
      app_state:
        root: "{{ root }}"
        projects: {a: plugin-test-a, b: plugin-test-b}
      register: state

    - name: Release the deploy lock
      app_lock:
        path: "{{ root }}/deploy.lock"
        state: absent
      register: released

    - name: Write the results
      ansible.builtin.copy:
        dest: "{{ root }}/results.json"
        content: "{{ {'took': took, 'again': again, 'ledger': ledger, 'state': state, 'released': released,
                      'env': {'A': 'x'} | app_env_file({'B': 'y'}),
                      'target': state | app_rollback_target('', root)} | to_json }}"
        mode: "0600"
"""


def test_the_plugins_run_under_ansible_playbook(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK)
    env = {**os.environ,
           "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),
           "ANSIBLE_LIBRARY": str(APP / "library"),
           "ANSIBLE_ACTION_PLUGINS": str(APP / "action_plugins"),
           "ANSIBLE_FILTER_PLUGINS": str(APP / "filter_plugins"),
           "ANSIBLE_MODULE_UTILS": str(APP / "module_utils"),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
           "ANSIBLE_REMOTE_TMP": str(tmp_path / "ansible-remote"),
           "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", "-e",
                           f"ansible_python_interpreter={sys.executable}", "-e", f"root={root}", str(playbook)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads((root / "results.json").read_text())
    assert results["took"]["changed"] is False and results["took"]["lock"]["version"] == "v7"
    assert results["again"]["msg"].startswith("This run already holds the deploy lock")
    assert results["ledger"]["changed"] is True and results["ledger"]["lines"] == 1
    assert results["state"]["ledger"] == [{"result": "success", "release": "r1", "commit": "c1"}]
    assert results["state"]["idle_slot"] == "a"
    assert results["released"]["released"] is True and not (root / "deploy.lock").exists()
    assert results["env"] == "A='x'\nB='y'\n"
    assert results["target"]["error"].startswith(f"no release serves yet ({root}/current is missing).")


# --- filters: compose services ------------------------------------------------------------

def test_compose_services_merges_the_files_and_leaves_out_profiled_services():
    base = "services:\n  db:\n    image: postgres:17\n  cache:\n    image: redis:7\n  admin:\n    profiles: [tools]\n"
    override = "services:\n  db:\n    ports: ['10.0.0.2:5432:5432']\n"
    assert filters.app_compose_services([base, override]) == ["cache", "db"]
    assert filters.app_compose_services(["networks: {}\n"]) == []


@pytest.mark.parametrize("text", ["services: [db]\n", "- a list\n", "services:\n  db: {image: [\n"])
def test_compose_services_cannot_tell_from_what_is_not_a_compose_file(text):
    assert filters.app_compose_services([text]) is None


def test_a_deploy_message_says_what_ran_how_long_and_what_serves():
    entry = {"time": "2026-12-06T14:01:02Z", "kind": "deploy", "result": "success", "version": "v1.4.2",
             "commit": "3f6c0e1a2b4d5e6f", "release": "20261206T140102Z-3f6c0e1a2b4d", "previous": "20261129T101502Z-9ab",
             "deployed_by": "ana@laptop", "failure": ""}
    message = filters.app_notification(entry, "shop", "web1", 31.7)
    assert message["text"] == ("shop on web1: deploy of v1.4.2 (3f6c0e1a2b4d) succeeded in 31 s by ana@laptop; "
                               "release 20261206T140102Z-3f6c0e1a2b4d serves")
    assert message["content"] == message["text"]
    assert message["shipshape"]["seconds"] == 31 and message["shipshape"]["app"] == "shop"
    assert message["shipshape"]["commit"] == "3f6c0e1a2b4d5e6f"


def test_a_failed_deploy_message_names_the_step_and_what_still_serves():
    entry = {"kind": "rollback", "result": "failed", "version": "main", "commit": "abc",
             "previous": "20261129T101502Z-9ab", "failure": "Ask the new slot for its health: 503"}
    text = filters.app_notification(entry, "shop", "web1")["text"]
    assert text == ("shop on web1: rollback of main (abc) FAILED - Ask the new slot for its health: 503; "
                    "20261129T101502Z-9ab still serves")
    first = filters.app_notification({"result": "failed", "version": "v1"}, "shop", "web1")["text"]
    assert first.endswith("FAILED - no reason recorded; no release served before")
