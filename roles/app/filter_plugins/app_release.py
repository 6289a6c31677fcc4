"""Filters of the app role: releases (rollback target, schema check, retention), the app's
environment (env files, checks, masking), the hooks' shape and the services of compose files.

Each filter is a plain function of its arguments; none reads files or asks the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import yaml

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
EXAMPLE_KEY = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
MIGRATION_FILE = r"^.*/([^/]+)/migrations/([^/]+)\.py$"
ENV_PLACEHOLDERS = ("change_me", "changeme", "change-me")
MASK = "********"
HOOK_POINTS = ("before_switch", "after_switch")
HOOK_KEYS = ("name", "argv", "unless", "dump", "changed_when")


def _kind(value) -> str:
    """Name the kind of a value as a YAML user knows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


# --- Releases ---------------------------------------------------------------------------

def app_rollback_target(state: Mapping, requested: str = "", root: str = "") -> dict:
    """Pick the release a rollback goes back to, from an app_state result.

    *requested* (a release id) wins when set; else the release that served last before the
    current one according to the ledger (so a second rollback goes forward again), else the
    newest release older than the current one. Returns {id, error}: *error* is empty when the
    rollback can go ahead, else says why not and lists the releases on the server (*root* is
    the app's directory, for the message)."""
    current = str(state.get("current_id") or "")
    requested = str(requested or "").strip()
    ids = sorted(str(release.get("id")) for release in state.get("releases") or [] if release.get("id"))
    served = [str(entry["release"]) for entry in state.get("ledger") or []
              if isinstance(entry, Mapping) and entry.get("result") == "success" and entry.get("release")]
    before = [release for release in served if release != current and release in ids]
    older = [release for release in ids if current and release < current]
    target = requested or (before[-1] if before else (older[-1] if older else ""))

    if not current:
        where = f"{root.rstrip('/')}/current" if root else "current"
        error = f"no release serves yet ({where} is missing)."
    elif target == current:
        error = f"{target} already serves."
    elif requested and requested not in ids:
        error = f"there is no release '{requested}' (app_rollback_to)."
    elif not target:
        error = f"no release older than the current one ({current})."
    else:
        return {"id": target, "error": ""}
    return {"id": target, "error": f"{error} Releases on the server: {', '.join(ids) or 'none'}."}


def _migration_names(files: Iterable, pattern: re.Pattern) -> list[str]:
    names = []
    for item in files or []:
        path = item.get("path", "") if isinstance(item, Mapping) else str(item)
        match = pattern.search(path)
        if match:
            names.append(match.expand(r"\1.\2"))
    return names


def app_schema_unknown(applied: Iterable, current_files: Iterable, target_files: Iterable,
                       file_regex: str = MIGRATION_FILE) -> list[str]:
    """Return the migrations the database has applied that the target release's code lacks.

    The code's migrations are the paths in *current_files* and *target_files* (strings, or
    dicts with a ``path`` as ansible.builtin.find returns them) that match *file_regex*, named
    ``LABEL.NAME`` from its two groups (``notes/migrations/0002_x.py`` -> ``notes.0002_x``).
    Only applied migrations (``LABEL.NAME`` strings) of the labels found in either release's
    code count; the framework's own apps are the same in both. Sorted, without repeats."""
    pattern = re.compile(file_regex)
    current_names = _migration_names(current_files, pattern)
    target_names = set(_migration_names(target_files, pattern))
    labels = {name.partition(".")[0] for name in current_names + sorted(target_names)}
    if not labels:
        return []
    unknown = set()
    for name in applied or []:
        name = str(name).strip()
        label, dot, _ = name.partition(".")
        if dot and label in labels and name not in target_names:
            unknown.add(name)
    return sorted(unknown)


def app_retention(releases: Iterable[Mapping], keep: int, current_id: str, protect: Iterable = ()) -> dict:
    """Decide which releases and images to remove, from app_state's release list.

    The releases are ordered by mtime (the one that served last comes last); the newest *keep*
    stay, and *current_id* and the ids in *protect* always stay. Returns {remove, images}: the
    ids to remove, oldest first, and the images of those releases that no kept release uses
    (each once, in the same order)."""
    ordered = sorted(releases or [], key=lambda release: (float(release.get("mtime") or 0), str(release.get("id"))))
    keep = max(0, int(keep))
    kept = {str(release.get("id")) for release in (ordered[-keep:] if keep else [])}
    kept |= {str(current_id)} | {str(release_id) for release_id in protect or []}
    removed = [release for release in ordered if str(release.get("id")) not in kept]
    in_use = {release.get("image") for release in ordered if str(release.get("id")) in kept and release.get("image")}
    images = []
    for release in removed:
        image = release.get("image")
        if image and image not in in_use and image not in images:
            images.append(image)
    return {"remove": [str(release.get("id")) for release in removed], "images": images}


# --- The app's environment -----------------------------------------------------------------

def _env_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def app_env_file(env: Mapping, secrets: Mapping, header: str = "") -> str:
    """Render an env file: *header* as comment lines, then KEY='value' for every key of *env*
    and *secrets* (a secret wins over a plain value of the same key), sorted by key.

    Values are single-quoted so that Compose takes them literally; booleans are written as
    true/false and None as an empty value. The text ends with a newline (empty when there is
    nothing to write)."""
    lines = []
    for line in str(header or "").splitlines():
        lines.append(line if line.startswith("#") else f"# {line}".rstrip())
    merged = {str(key): value for key, value in (env or {}).items()}
    merged.update({str(key): value for key, value in (secrets or {}).items()})
    lines.extend(f"{key}='{_env_value(merged[key])}'" for key in sorted(merged))
    return "\n".join(lines) + "\n" if lines else ""


def app_env_problems(env: Mapping, secrets: Mapping, placeholders: Iterable) -> dict:
    """Find what keeps an environment from being written: {invalid_names, unquotable, placeholders}.

    - invalid_names: keys that are not environment variable names;
    - unquotable: keys whose string value holds a line break or a single quote, which a
      single-quoted env file value cannot hold;
    - placeholders: secrets that are None or one of *placeholders* (compared case-insensitively
      after trimming), and plain values that read change_me, changeme or change-me.
    Each list is sorted."""
    env, secrets = env or {}, secrets or {}
    merged = {**env, **secrets}
    invalid = sorted(str(key) for key in merged if not ENV_NAME.fullmatch(str(key)))
    unquotable = sorted(str(key) for key, value in merged.items()
                        if isinstance(value, str) and any(char in value for char in "\r\n'"))
    refused = {str(value).lower() for value in placeholders or []}
    found = {str(key) for key, value in secrets.items() if value is None or str(value).strip().lower() in refused}
    found |= {str(key) for key, value in env.items()
              if isinstance(value, str) and value.strip().lower() in ENV_PLACEHOLDERS}
    return {"invalid_names": invalid, "unquotable": unquotable, "placeholders": sorted(found)}


def app_env_missing(example_text: str, configured_keys: Iterable) -> list[str]:
    """Return the keys an example env file sets (``KEY=`` or ``export KEY=``) that are not in
    *configured_keys*, sorted, each once. Comment lines do not count."""
    configured = {str(key) for key in configured_keys or []}
    found = set()
    for line in str(example_text or "").splitlines():
        match = EXAMPLE_KEY.match(line)
        if match and match.group(1) not in configured:
            found.add(match.group(1))
    return sorted(found)


def app_env_subset(mapping: Mapping, keys: Iterable) -> dict:
    """Return the entries of *mapping* for *keys*; keys it lacks are left out."""
    mapping = mapping or {}
    return {key: mapping[key] for key in keys or [] if key in mapping}


def app_mask(text, secrets) -> str:
    """Replace every secret value (a string longer than 3 characters) in *text* with ********.

    *secrets* is a mapping (its values are the secrets) or a list. Longer secrets are
    replaced first, so a secret that contains another is masked whole."""
    values = secrets.values() if isinstance(secrets, Mapping) else (secrets or [])
    text = "" if text is None else str(text)
    for secret in sorted({value for value in values if isinstance(value, str) and len(value) > 3},
                         key=lambda value: (-len(value), value)):
        text = text.replace(secret, MASK)
    return text


# --- Hooks -------------------------------------------------------------------------------

def _argv_error(value, what: str) -> str | None:
    if not isinstance(value, (list, tuple)) or not value:
        return f"{what} must be a non-empty list of strings, not {_kind(value)}"
    bad = [index for index, item in enumerate(value) if not isinstance(item, str)]
    if bad:
        return f"{what} must be a list of strings; item {bad[0]} is {_kind(value[bad[0]])}"
    return None


def _hook_errors(hook, where: str) -> list[str]:
    if not isinstance(hook, Mapping):
        return [f"{where} must be a mapping (name, argv, unless, dump, changed_when), not {_kind(hook)}."]
    name = hook.get("name")
    if isinstance(name, str) and name.strip():
        where = f"{where} ({name})"
    errors = []
    unknown = sorted(str(key) for key in hook if key not in HOOK_KEYS)
    if unknown:
        errors.append(f"{where}: unknown key(s) {', '.join(unknown)} (a hook has {', '.join(HOOK_KEYS)}).")
    if "name" not in hook:
        errors.append(f"{where}: name is missing (a non-empty string).")
    elif not isinstance(name, str):
        errors.append(f"{where}: name must be a non-empty string, not {_kind(name)}.")
    elif not name.strip():
        errors.append(f"{where}: name is empty.")
    problem = "argv is missing (a non-empty list of strings)" if "argv" not in hook else _argv_error(hook["argv"], "argv")
    if problem:
        errors.append(f"{where}: {problem}.")
    if "unless" in hook:
        problem = _argv_error(hook["unless"], "unless")
        if problem:
            errors.append(f"{where}: {problem}.")
    if "dump" in hook and not isinstance(hook["dump"], bool):
        errors.append(f"{where}: dump must be true or false, not {_kind(hook['dump'])}.")
    if "changed_when" in hook and not isinstance(hook["changed_when"], str):
        errors.append(f"{where}: changed_when must be a string (text in the hook's output), "
                      f"not {_kind(hook['changed_when'])}.")
    return errors


def app_hooks_errors(hooks) -> list[str]:
    """Check the shape of app_hooks; return one message per problem (none when it is fine).

    app_hooks is a mapping whose keys are among before_switch and after_switch, each a list of
    hooks; a hook is a mapping with name (non-empty string), argv (non-empty list of strings)
    and optionally unless (non-empty list of strings), dump (boolean) and changed_when
    (string). Messages name the hook as app_hooks.POINT[INDEX] (from 0)."""
    if not isinstance(hooks, Mapping):
        return [f"app_hooks must be a mapping with the keys {' and '.join(HOOK_POINTS)}, not {_kind(hooks)}."]
    errors = []
    for point in sorted(str(key) for key in hooks if key not in HOOK_POINTS):
        errors.append(f"app_hooks.{point}: unknown hook point (the points are {' and '.join(HOOK_POINTS)}).")
    for point in HOOK_POINTS:
        if point not in hooks:
            continue
        value = hooks[point]
        if not isinstance(value, (list, tuple)):
            errors.append(f"app_hooks.{point} must be a list of hooks, not {_kind(value)}.")
            continue
        for index, hook in enumerate(value):
            errors.extend(_hook_errors(hook, f"app_hooks.{point}[{index}]"))
    return errors


def app_compose_services(texts: Iterable) -> list[str] | None:
    """The services `docker compose up` starts from these compose files (their texts, merged
    in order): every service named in any of them, less those that only start with a profile.
    None when a text is not a compose file this can read (the caller then asks Compose)."""
    services: dict[str, bool] = {}
    for text in texts:
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            return None
        if not isinstance(document, Mapping) or not isinstance(document.get("services", {}), Mapping):
            return None
        for name, service in (document.get("services") or {}).items():
            has_profiles = isinstance(service, Mapping) and bool(service.get("profiles"))
            services[str(name)] = services.get(str(name), False) or has_profiles
    return sorted(name for name, profiled in services.items() if not profiled)


def app_notification(entry: Mapping, app: str, server: str, seconds=None) -> dict:
    """The message about a deploy or rollback for the team's webhook, from its ledger line:
    a one-line text (Slack and Mattermost read `text`, Discord `content`) and the facts under
    `shipshape`."""
    kind = str(entry.get("kind") or "deploy")
    version = str(entry.get("version") or "")
    commit = str(entry.get("commit") or "")[:12]
    what = f"{kind} of {version}" + (f" ({commit})" if commit and commit != version else "")
    took = f" in {int(seconds)} s" if seconds is not None else ""
    who = f" by {entry['deployed_by']}" if entry.get("deployed_by") else ""
    if entry.get("result") == "success":
        release = entry.get("release") or entry.get("attempted_release") or ""
        text = f"{app} on {server}: {what} succeeded{took}{who}; release {release} serves"
    else:
        previous = entry.get("previous") or ""
        serving = f"{previous} still serves" if previous else "no release served before"
        text = f"{app} on {server}: {what} FAILED{took}{who} - {entry.get('failure') or 'no reason recorded'}; {serving}"
    facts = {key: entry.get(key, "") for key in (
        "time", "kind", "result", "version", "commit", "release", "attempted_release", "previous",
        "deployed_by", "failure")}
    facts.update(app=app, server=server, seconds=int(seconds) if seconds is not None else None)
    return {"text": text, "content": text, "shipshape": facts}

class FilterModule:
    """The app role's filters."""

    def filters(self):
        return {
            "app_rollback_target": app_rollback_target,
            "app_notification": app_notification,
            "app_schema_unknown": app_schema_unknown,
            "app_retention": app_retention,
            "app_env_file": app_env_file,
            "app_env_problems": app_env_problems,
            "app_env_missing": app_env_missing,
            "app_env_subset": app_env_subset,
            "app_mask": app_mask,
            "app_hooks_errors": app_hooks_errors,
            "app_compose_services": app_compose_services,
        }
