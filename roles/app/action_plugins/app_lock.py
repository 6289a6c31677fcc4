"""Action of the app role: one deploy at a time per server.

The task ``app_lock`` runs here, on the controller. It describes this deploy, takes the lock
file on the server with the app_lock module (which creates it atomically), waits while
another deploy holds it, removes a stale lock, and releases the lock this run holds.

Options of the task:

- ``path`` (str, required): the lock file on the server (its directory must exist).
- ``state`` (``present`` | ``absent``, default ``present``): take the lock, or release it.
- ``wait`` (int, default 60): seconds to wait for another deploy to release the lock.
- ``stale_minutes`` (int, default 60): a lock older than this many minutes is stale.
- ``version`` (str): the version being deployed, recorded in the lock.
- ``deployer`` (str): who deploys; empty: ``<user>@<host>`` of the controller.
- ``owner`` / ``group`` (str, optional): owner and group of the lock file (group: the owner's
  name when unset).

A lock is stale when it is older than ``stale_minutes``, or when it was taken from this
controller by an ansible-playbook process that no longer runs. A stale lock is removed (only if
it is still the same lock) and the lock is taken at once. Taking and releasing the lock report
no change. In check mode nothing happens on the server.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import socket
import time
from collections.abc import Callable

from ansible.plugins.action import ActionBase

POLL_SECONDS = 5

ARGUMENT_SPEC = {
    "path": {"type": "str", "required": True},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "wait": {"type": "int", "default": 60},
    "stale_minutes": {"type": "int", "default": 60},
    "version": {"type": "str", "default": ""},
    "deployer": {"type": "str", "default": ""},
    "owner": {"type": "str"},
    "group": {"type": "str"},
}


def default_deployer() -> str:
    """Return ``<user>@<host>`` of the controller, the deployer when none is configured."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def build_holder(deployer: str, version: str, controller: str, pid: int,
                 now: datetime.datetime) -> dict:
    """Describe a deploy for its lock: who, from where, which process, since when, which version.

    *now* is an aware datetime; it is recorded in UTC as ``started`` (ISO 8601, whole seconds)
    and ``epoch`` (seconds since 1970)."""
    now = now.astimezone(datetime.timezone.utc)
    return {
        "deployer": deployer,
        "controller": controller,
        "pid": int(pid),
        "started": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "epoch": int(now.timestamp()),
        "version": version,
    }


def _as_int(value, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (signal 0 tests without sending)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    except OSError:
        return False
    return True


def lock_is_stale(held: dict, me: dict, now_epoch: int, stale_minutes: int,
                  pid_alive: Callable[[int], bool]) -> str | None:
    """Decide whether the lock *held* may be removed; return the reason, or None when it holds.

    It is stale when it is older than *stale_minutes* (a lock without a start time counts as
    old), or when it was taken from this controller (*me*: {controller, pid}) by a process
    that no longer runs (*pid_alive* tells)."""
    age = now_epoch - _as_int(held.get("epoch"))
    if age > stale_minutes * 60:
        return f"the lock is older than {stale_minutes} minutes"
    pid = _as_int(held.get("pid"))
    if held.get("controller") == me.get("controller") and pid > 0 and not pid_alive(pid):
        return f"its ansible-playbook (pid {pid} on {held.get('controller')}) no longer runs"
    return None


def lock_is_mine(held: dict, me: dict) -> bool:
    """Whether the lock *held* was taken by this ansible-playbook run (*me*: {controller, pid})."""
    return (bool(held.get("controller")) and held.get("controller") == me.get("controller")
            and _as_int(held.get("pid")) > 0 and _as_int(held.get("pid")) == _as_int(me.get("pid")))


def _field(held: dict, key: str) -> str:
    value = held.get(key)
    return "?" if value is None or value == "" else str(value)


def stale_message(path: str, held: dict, stale_minutes: int) -> str:
    """The message that says a stale lock was removed, and whose it was."""
    return (f"Removed a stale deploy lock ({path}) held by {_field(held, 'deployer')} from "
            f"{_field(held, 'controller')} since {_field(held, 'started')}: that deploy is gone "
            f"(its ansible-playbook no longer runs, or the lock is older than {stale_minutes} minutes).")


def busy_message(path: str, host: str, held: dict, wait: int, stale_minutes: int) -> str:
    """The message that stops a deploy because another deploy holds the lock."""
    return (f"Another deploy holds the deploy lock {path} on {host}: {_field(held, 'deployer')} from "
            f"{_field(held, 'controller')} (ansible-playbook pid {_field(held, 'pid')}), deploying version "
            f"'{_field(held, 'version')}' since {_field(held, 'started')}. Waited {wait} seconds "
            f"(app_lock_wait). Run again when it has finished. When that deploy is gone, the lock is "
            f"removed by itself after {stale_minutes} minutes (app_lock_stale_minutes), or at once when "
            f"it ran from this controller; or remove {path} on the server by hand.")


def acquire(run_module: Callable[[dict], dict], path: str, holder: dict, wait: int, stale_minutes: int,
            owner: str | None = None, group: str | None = None, *,
            pid_alive: Callable[[int], bool] = pid_alive,
            sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.monotonic,
            now_epoch: Callable[[], float] = time.time,
            poll: float = POLL_SECONDS) -> dict:
    """Take the lock at *path* for *holder*, waiting up to *wait* seconds.

    *run_module* runs the app_lock module with the given arguments and returns its result.
    Returns {taken, held, held_raw, mine, stale_removed, stale_message, failed, msg}: *held* is
    the lock in place at the end (this deploy's own when taken); *mine* is true when this run
    already held the lock; *failed*/*msg* carry a module failure."""
    me = {"controller": holder.get("controller"), "pid": holder.get("pid")}
    content = json.dumps(holder, sort_keys=True) + "\n"
    deadline = clock() + max(0, wait)
    removed = None
    removed_message = ""
    while True:
        took = run_module({"path": path, "state": "take", "content": content, "owner": owner, "group": group})
        if took.get("failed"):
            return {"taken": False, "failed": True, "msg": took.get("msg", "the app_lock module failed"),
                    "held": {}, "held_raw": "", "mine": False,
                    "stale_removed": removed, "stale_message": removed_message}
        held, held_raw = took.get("holder") or {}, took.get("holder_raw") or ""
        if took.get("taken") or lock_is_mine(held, me):
            return {"taken": True, "failed": False, "held": held, "held_raw": held_raw,
                    "mine": not took.get("taken"), "stale_removed": removed, "stale_message": removed_message}
        if took.get("exists", True) is False and clock() < deadline:
            continue  # the lock went away between the two steps of taking: try again at once
        if lock_is_stale(held, me, int(now_epoch()), stale_minutes, pid_alive):
            gone = run_module({"path": path, "state": "remove_if", "expect": held_raw})
            if gone.get("failed"):
                return {"taken": False, "failed": True, "msg": gone.get("msg", "the app_lock module failed"),
                        "held": held, "held_raw": held_raw, "mine": False,
                        "stale_removed": removed, "stale_message": removed_message}
            if gone.get("released"):
                removed, removed_message = held, stale_message(path, held, stale_minutes)
                continue
        remaining = deadline - clock()
        if remaining <= 0:
            return {"taken": False, "failed": False, "held": held, "held_raw": held_raw, "mine": False,
                    "stale_removed": removed, "stale_message": removed_message}
        sleep(min(poll, remaining))


def release(run_module: Callable[[dict], dict], path: str, me: dict) -> dict:
    """Remove the lock at *path* when this run (*me*: {controller, pid}) holds it.

    Returns {released, held, failed, msg}; a lock held by another deploy is left alone."""
    found = run_module({"path": path, "state": "read"})
    if found.get("failed"):
        return {"released": False, "held": {}, "failed": True, "msg": found.get("msg", "the app_lock module failed")}
    held = found.get("holder") or {}
    if not found.get("exists"):
        return {"released": False, "held": {}, "failed": False, "msg": f"There is no deploy lock {path}."}
    if not lock_is_mine(held, me):
        return {"released": False, "held": held, "failed": False,
                "msg": f"The deploy lock {path} is held by another deploy "
                       f"({_field(held, 'deployer')} from {_field(held, 'controller')}); it is left alone."}
    gone = run_module({"path": path, "state": "remove_if", "expect": found.get("holder_raw") or ""})
    if gone.get("failed"):
        return {"released": False, "held": held, "failed": True, "msg": gone.get("msg", "the app_lock module failed")}
    if gone.get("released"):
        return {"released": True, "held": held, "failed": False, "msg": f"Released the deploy lock {path}."}
    return {"released": False, "held": held, "failed": False,
            "msg": f"The deploy lock {path} changed while it was released; it is left alone."}


class ActionModule(ActionBase):
    """Take or release the deploy lock of the app on the server."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    # How the action waits between two tries (a plain function of the seconds).
    sleep = staticmethod(time.sleep)

    def _run_lock_module(self, task_vars: dict) -> Callable[[dict], dict]:
        def run(args: dict) -> dict:
            args = {key: value for key, value in args.items() if value is not None}
            return self._execute_module(module_name="app_lock", module_args=args, task_vars=task_vars)
        return run

    def run(self, tmp=None, task_vars=None):
        """Take (state present) or release (state absent) the lock; never reports a change."""
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        path = args["path"]
        result["changed"] = False
        if self._task.check_mode:
            result["msg"] = "check mode: the deploy lock is not taken"
            result["lock"] = {}
            return result

        # The action runs in a worker process that ansible-playbook forked for the task, so
        # the parent of this process is the ansible-playbook run: the same for every task of
        # the run, and gone when the run ends.
        me = {"controller": socket.gethostname(), "pid": os.getppid()}
        run_module = self._run_lock_module(task_vars)

        if args["state"] == "absent":
            released = release(run_module, path, me)
            result.update(released=released["released"], lock=released["held"], msg=released["msg"])
            if released["failed"]:
                result["failed"] = True
            return result

        holder = build_holder(args["deployer"] or default_deployer(), args["version"], me["controller"], me["pid"],
                              datetime.datetime.now(datetime.timezone.utc))
        outcome = acquire(run_module, path, holder, args["wait"], args["stale_minutes"],
                          args["owner"], args["group"] or args["owner"], sleep=self.sleep)
        result.update(lock=outcome["held"], stale_removed=outcome["stale_removed"],
                      stale_message=outcome["stale_message"])
        if outcome["failed"]:
            result.update(failed=True, msg=outcome["msg"])
        elif not outcome["taken"]:
            host = task_vars.get("inventory_hostname", "this host")
            result.update(failed=True, msg=busy_message(path, host, outcome["held"], args["wait"],
                                                         args["stale_minutes"]))
        else:
            taken = (f"This run already holds the deploy lock {path}." if outcome["mine"]
                     else f"Took the deploy lock {path}.")
            result["msg"] = " ".join(part for part in (outcome["stale_message"], taken) if part)
        return result
