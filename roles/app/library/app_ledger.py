#!/usr/bin/python
"""Ansible module of the app role: adds a deploy or rollback to the release ledger."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: app_ledger
short_description: Add an entry to the release ledger of an app
description:
  - The release ledger is a text file with one JSON object per line, one line per deploy or
    rollback, oldest first. This module appends O(entry) as one line (keys sorted) and keeps
    the last O(keep) lines.
  - A successful entry that repeats the last successful one (the same values for every key of
    O(same_keys)) is not added; a run that deployed nothing new leaves the ledger as it was and
    reports no change. A failed entry is always added.
  - Lines that are not JSON objects are kept as they are and play no part in the comparison.
  - The file is replaced atomically (a temporary file in the same directory, flushed to disk,
    then renamed over the ledger), so a reader sees the old or the new ledger, never part of
    one. Its directory must exist.
options:
  path:
    description: Path of the ledger file (created when missing).
    type: str
    required: true
  entry:
    description:
      - The entry to add. Its C(result) key (V(success) or anything else) decides whether it
        may be skipped as a repeat.
    type: dict
    required: true
  keep:
    description: Lines the ledger keeps; the oldest go first. At least 1.
    type: int
    default: 200
  same_keys:
    description:
      - Keys whose values make a successful entry a repeat of the last successful one. An empty
        list makes every entry count as new.
    type: list
    elements: str
    default: [commit, image_id, env_sha256]
  owner:
    description: User that owns the ledger (a name or a numeric id); unset keeps the current user.
    type: str
  group:
    description: Group of the ledger (a name or a numeric id); unset keeps the current group.
    type: str
  mode:
    description: Permissions of the ledger, as an octal number (V('0640')).
    type: raw
    default: '0640'
attributes:
  check_mode:
    support: full
    description: Reports whether the entry would be added, and writes nothing.
author: shipshape
"""

EXAMPLES = r"""
- name: Add the deploy to the release ledger
  app_ledger:
    path: /srv/example/releases.jsonl
    entry:
      time: "2026-12-06T14:01:02Z"
      kind: deploy
      release: 20261206T140102Z-3f6c0e1a2b4d
      commit: 3f6c0e1a2b4d5e6f708192a3b4c5d6e7f8091a2b
      image_id: sha256:0123abcd
      env_sha256: 5a1f0c
      result: success
    keep: 200
    owner: deploy
    group: deploy
"""

RETURN = r"""
appended:
  description: Whether the entry was added (or, in check mode, would be).
  type: bool
  returned: always
lines:
  description: Lines in the ledger after the call (in check mode, the lines it would have).
  type: int
  returned: always
path:
  description: Path of the ledger.
  type: str
  returned: always
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils import app_files


def _parsed(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def ledger_append(lines: list[str], entry: dict, keep: int, same_keys: list) -> tuple[list[str], bool]:
    """Return the ledger *lines* with *entry* added, and whether it was added.

    A successful entry is not added when the last successful line has the same values for all
    *same_keys* (an empty *same_keys* never counts as the same). Otherwise the entry is added
    as JSON with sorted keys and only the last *keep* lines are kept. Lines that are not JSON
    objects are kept but not compared."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    if entry.get("result") == "success" and same_keys:
        last_good = next((parsed for parsed in map(_parsed, reversed(lines))
                          if parsed is not None and parsed.get("result") == "success"), None)
        if last_good is not None and all(last_good.get(key) == entry.get(key) for key in same_keys):
            return list(lines), False
    return (list(lines) + [json.dumps(entry, sort_keys=True)])[-keep:], True


def read_ledger(path: str) -> list[str]:
    """Return the non-blank lines of the ledger at *path*; none when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line for line in handle.read().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "str", "required": True},
            "entry": {"type": "dict", "required": True},
            "keep": {"type": "int", "default": 200},
            "same_keys": {"type": "list", "elements": "str", "default": ["commit", "image_id", "env_sha256"]},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "mode": {"type": "raw", "default": "0640"},
        },
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    try:
        mode = app_files.parse_mode(params["mode"])
    except ValueError as exc:
        module.fail_json(msg=str(exc), changed=False)
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        module.fail_json(msg=f"the directory of the release ledger {path} does not exist", changed=False)
    try:
        lines, appended = ledger_append(read_ledger(path), params["entry"], params["keep"], params["same_keys"])
    except (ValueError, OSError) as exc:
        module.fail_json(msg=f"release ledger {path}: {exc}", changed=False)

    changed = appended
    if appended and not module.check_mode:
        try:
            uid, gid = app_files.resolve_ids(params["owner"], params["group"])
            app_files.write_atomic(path, "\n".join(lines) + "\n", mode, uid, gid)
        except (ValueError, OSError) as exc:
            module.fail_json(msg=f"cannot write the release ledger {path}: {exc}", changed=False)
    if os.path.exists(path):
        # A ledger whose owner or mode differs is corrected (and reported as a change).
        changed = module.set_owner_if_different(path, params["owner"], changed, expand=False)
        changed = module.set_group_if_different(path, params["group"], changed, expand=False)
        changed = module.set_mode_if_different(path, f"{mode:04o}", changed, expand=False)
    module.exit_json(changed=changed, appended=appended, lines=len(lines), path=path)


if __name__ == "__main__":
    main()
