#!/usr/bin/python
"""Ansible module of the app role: the deploy lock file on the server (take, read, release)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: app_lock
short_description: Take, read or release the deploy lock file of an app
description:
  - Works on the deploy lock, a small JSON file that exists while a deploy runs, so that one
    deploy at a time changes a server. The app_lock action of the app role uses this module
    (it waits, removes stale locks and says who holds the lock); a playbook rarely calls it
    directly.
  - O(state=take) writes O(content) to a temporary file in the lock's directory and then
    hard-links it to O(path). The link fails when O(path) exists, so of two deploys that take
    the lock at the same moment exactly one gets it, and a reader never sees a half-written
    lock. The temporary file is removed either way.
  - O(state=release) and O(state=remove_if) remove O(path) only when its content equals
    O(expect) exactly; a lock that another deploy took in the meantime is left alone.
  - O(state=read) reports the lock without touching it.
  - The result never reports a change; taking and then releasing the lock leaves the server as
    it was. In check mode nothing is written or removed.
options:
  path:
    description:
      - Path of the lock file. Its directory must exist; the module does not create it.
    type: str
    required: true
  state:
    description:
      - V(take) creates the lock with O(content) unless it exists.
      - V(release) and V(remove_if) remove the lock when its content equals O(expect).
      - V(read) reports the lock.
    type: str
    choices: [take, release, read, remove_if]
    default: read
  content:
    description:
      - Text of the lock, the JSON description of the deploy that holds it. Required with
        O(state=take).
    type: str
  expect:
    description:
      - Content the lock must have, exactly, to be removed. Required with O(state=release) and
        O(state=remove_if).
    type: str
  owner:
    description: User that owns the lock file (a name or a numeric id); unset keeps the current user.
    type: str
  group:
    description: Group of the lock file (a name or a numeric id); unset keeps the current group.
    type: str
attributes:
  check_mode:
    support: full
    description: Reports the lock in place and writes or removes nothing.
notes:
  - The lock file is created with mode 0644.
  - In the app role's tasks, C(app_lock) runs the action of the same name on the controller, which
    calls this module. The action takes other options - C(path), C(state) (V(present) takes the
    lock and waits while another deploy holds it, V(absent) releases the lock this run holds),
    C(wait), C(stale_minutes), C(version), C(deployer), C(owner) and C(group); the action plugin's
    docstring describes them.
author: shipshape
"""

EXAMPLES = r"""
# In the app role, the task runs the app_lock action, which calls this module.
- name: Take the deploy lock (waits while another deploy holds it)
  app_lock:
    path: /srv/example/deploy.lock
    state: present
    wait: 60
    stale_minutes: 60
    version: v1.4.0
    owner: deploy

- name: Release the deploy lock this run holds
  app_lock:
    path: /srv/example/deploy.lock
    state: absent
"""

RETURN = r"""
taken:
  description: Whether this call created the lock (O(state=take)).
  type: bool
  returned: when state is take
released:
  description: Whether the lock was removed (O(state=release) and O(state=remove_if); also the action's C(state=absent)).
  type: bool
  returned: when state is release, remove_if or (the action's) absent
exists:
  description: Whether the lock file exists after the call.
  type: bool
  returned: always
holder:
  description:
    - The lock's content parsed as JSON - after O(state=take), the lock that is in place (this
      call's own when RV(taken)). An empty dict when there is no lock or its content is not a
      JSON object.
  type: dict
  returned: always
holder_raw:
  description: The lock's content as text; empty when there is no lock.
  type: str
  returned: always
lock:
  description:
    - The lock in place - this run's after the action took it, the other deploy's when it waited
      in vain, the released one after C(state=absent). Keys C(deployer), C(controller), C(pid) (of
      its ansible-playbook), C(started) (UTC), C(epoch) and C(version).
  type: dict
  returned: by the action
stale_removed:
  description: The stale lock the action removed before it took the lock, or null.
  type: dict
  returned: by the action, with state present
stale_message:
  description: Says whose stale lock was removed; empty when none was.
  type: str
  returned: by the action, with state present
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils import app_files

LOCK_MODE = 0o644


class LockError(Exception):
    """A lock operation that cannot be done; the message says why."""


def parse_holder(raw: str) -> dict:
    """Return the lock content *raw* parsed as a JSON object, or {} when it is not one."""
    try:
        held = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return held if isinstance(held, dict) else {}


def read_lock(path: str) -> dict:
    """Describe the lock at *path*: {exists, holder, holder_raw}.

    A lock that vanishes while it is read, or cannot be read, counts as absent."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return {"exists": False, "holder": {}, "holder_raw": ""}
    except IsADirectoryError as exc:
        raise LockError(f"{path} is a directory, not a deploy lock file") from exc
    return {"exists": True, "holder": parse_holder(raw), "holder_raw": raw}


def resolve_ids(owner: str | None, group: str | None) -> tuple[int, int]:
    """Return the (uid, gid) for a user and group given by name or number; -1 for unset."""
    try:
        return app_files.resolve_ids(owner, group)
    except ValueError as exc:
        raise LockError(f"{exc} for the deploy lock") from exc


def take_lock(path: str, content: str, owner: str | None = None, group: str | None = None,
              check_mode: bool = False) -> dict:
    """Create the lock at *path* holding *content* unless a lock exists.

    The content goes to a temporary file in the same directory, complete with its mode and
    owner, which is then hard-linked to *path*: the link fails when *path* exists, so taking
    is atomic. Returns {taken, exists, holder, holder_raw}, the holder being the lock in place
    afterwards. In check mode nothing is written and taken is False."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise LockError(f"its directory {directory} does not exist")
    if check_mode:
        return {"taken": False, **read_lock(path)}
    uid, gid = resolve_ids(owner, group)
    temp = app_files.write_whole(path, content, LOCK_MODE, uid, gid)
    try:
        try:
            os.link(temp, path)
        except FileExistsError:
            return {"taken": False, **read_lock(path)}
    finally:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
    return {"taken": True, "exists": True, "holder": parse_holder(content), "holder_raw": content}


def remove_lock_if(path: str, expect: str, check_mode: bool = False) -> dict:
    """Remove the lock at *path* when its content equals *expect* exactly.

    Returns {released, exists, holder, holder_raw}, describing the lock as it was found. In
    check mode nothing is removed and released is False."""
    found = read_lock(path)
    if not found["exists"] or found["holder_raw"] != expect or check_mode:
        return {"released": False, **found}
    try:
        os.unlink(path)
    except FileNotFoundError:
        return {"released": False, **found, "exists": False}
    return {"released": True, **found, "exists": False}


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "str", "required": True},
            "state": {"type": "str", "default": "read", "choices": ["take", "release", "read", "remove_if"]},
            "content": {"type": "str"},
            "expect": {"type": "str"},
            "owner": {"type": "str"},
            "group": {"type": "str"},
        },
        required_if=[
            ("state", "take", ("content",)),
            ("state", "release", ("expect",)),
            ("state", "remove_if", ("expect",)),
        ],
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["state"] == "take":
            result = take_lock(params["path"], params["content"], params["owner"], params["group"],
                               check_mode=module.check_mode)
        elif params["state"] in ("release", "remove_if"):
            result = remove_lock_if(params["path"], params["expect"], check_mode=module.check_mode)
        else:
            result = read_lock(params["path"])
    except (LockError, OSError) as exc:
        module.fail_json(msg=f"deploy lock {params['path']}: {exc}", changed=False)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
