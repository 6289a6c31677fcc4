"""Shared helpers of scripts/prepare.py and scripts/validate.py: the secrets an environment
needs, how strong they must be, where the vault and its password file live, and how the
vault is read and written (with the project's own `ansible-vault`).

Secret values never leave these functions in messages: only names appear there.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


def ensure_project_python() -> None:
    """Re-run the calling script with the project's virtualenv when PyYAML is missing here."""
    try:
        import yaml  # noqa: F401
    except ImportError:
        if VENV_PYTHON.exists() and Path(sys.executable).resolve() != VENV_PYTHON.resolve():
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        sys.stderr.write("[shipshape] ERROR: PyYAML is missing; run `make venv` and use "
                         ".venv/bin/python (it has Ansible and PyYAML)\n")
        sys.exit(2)


ensure_project_python()

import yaml  # noqa: E402  (after the interpreter check above)


# --------------------------------------------------------------------------- secrets

@dataclass(frozen=True)
class Secret:
    name: str          # variable in vault.yml
    purpose: str       # what it is, for messages
    min_length: int    # shorter is weak
    gen_bytes: int     # random bytes of a generated value (URL-safe base64)
    note: str = ""     # what rotating it implies


SECRETS = (
    Secret("vault_django_secret_key", "Django's SECRET_KEY, which signs sessions and tokens", 50, 50,
           "rotating it logs every user out"),
    Secret("vault_postgres_password", "the database password, POSTGRES_PASSWORD", 16, 32,
           "the database keeps its old password: change it there too "
           "(ALTER USER ... PASSWORD) before deploying the new value"),
    Secret("vault_superuser_password",
           "the password of the app's admin user, DJANGO_SUPERUSER_PASSWORD", 16, 24,
           "an existing admin user keeps its old password (the deploy's after-switch hook "
           "`manage.py ensure_superuser` only creates the user when absent): change it there too "
           "(`manage.py changepassword`)"),
    Secret("vault_restic_password", "the password of the restic backup repository", 24, 48,
           "an existing restic repository keeps its old key: add the new one with `restic key add` first"),
)
SECRET_NAMES = tuple(s.name for s in SECRETS)

# Values that only hold a place (compared case-insensitively after trimming); the roles and
# the preflight checks refuse the same values.
PLACEHOLDERS = frozenset({
    "", "changeme", "change_me", "change-me", "todo", "xxx", "secret", "password", "none", "null",
    "replace_me", "replace-me", "<secret>", "<password>", "...",
})
COMMON_WEAK = frozenset({
    "123456", "12345678", "123456789", "1234567890", "qwerty", "qwertyuiop", "letmein",
    "admin", "administrator", "welcome", "iloveyou", "passw0rd", "p@ssw0rd", "postgres",
    "django-insecure", "hunter2", "correcthorsebatterystaple",
})


def is_placeholder(value) -> bool:
    if value is None:
        return True
    text = str(value).strip().lower()
    return text in PLACEHOLDERS or text.startswith("change_me") or text.startswith("changeme")


def estimated_bits(value: str) -> float:
    """A rough upper bound of the entropy of a value from its length and character classes."""
    pool = 0
    if re.search(r"[a-z]", value):
        pool += 26
    if re.search(r"[A-Z]", value):
        pool += 26
    if re.search(r"[0-9]", value):
        pool += 10
    if re.search(r"[^a-zA-Z0-9]", value):
        pool += 33
    return len(value) * math.log2(pool) if pool else 0.0


def weakness(value, min_length: int) -> str | None:
    """Why a secret value is weak, in words that never quote it; None when it is strong."""
    if value is None or not isinstance(value, (str, int, float)):
        return "is not a string"
    text = str(value)
    if is_placeholder(text):
        return "is empty or a placeholder"
    if len(text) < min_length:
        return f"is too short ({len(text)} characters; at least {min_length})"
    if text.lower() in COMMON_WEAK or text.lower().startswith("django-insecure"):
        return "is a well-known value"
    distinct = len(set(text))
    if distinct < max(8, min(len(text) // 4, 16)):
        return f"repeats characters ({distinct} different ones in {len(text)})"
    if estimated_bits(text) < 80:
        return "is too simple (under 80 bits of entropy by its length and character classes)"
    return None


def generate(secret: Secret) -> str:
    import secrets as _secrets

    return _secrets.token_urlsafe(secret.gen_bytes)


def secret_by_name(name: str) -> Secret | None:
    key = name if name.startswith("vault_") else f"vault_{name}"
    return next((s for s in SECRETS if s.name == key), None)


# --------------------------------------------------------------------------- names and addresses

ENV_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
REPO_URL = re.compile(r"^(https?://[^\s/]+/\S+|ssh://\S+@?[^\s/]+/\S+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:\S+|file:///\S+)$")

# Address blocks reserved for documentation (RFC 5737, RFC 3849): an inventory that still
# holds one has not been edited yet.
DOCUMENTATION_NETS = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))


def is_documentation_address(text: str) -> bool:
    try:
        addr = ipaddress.ip_address(str(text))
    except ValueError:
        return False
    return any(addr in net for net in DOCUMENTATION_NETS)


# --------------------------------------------------------------------------- files

def inventory_paths(inventory: Path) -> dict:
    return {
        "hosts": inventory / "hosts.yml",
        "main": inventory / "group_vars" / "all" / "main.yml",
        "vault": inventory / "group_vars" / "all" / "vault.yml",
    }


def config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def default_vault_password_file(env: str) -> Path:
    """Where an environment's vault password lives unless told otherwise: outside any repository."""
    return config_home() / "shipshape" / f"{env}.vault-pass"


def vault_password_file(explicit: str | None, env: str) -> tuple:
    """(path, where the choice came from): --vault-password-file, then
    ANSIBLE_VAULT_PASSWORD_FILE, then ~/.config/shipshape/ENV.vault-pass."""
    if explicit:
        return Path(explicit).expanduser().resolve(), "--vault-password-file"
    if os.environ.get("ANSIBLE_VAULT_PASSWORD_FILE"):
        return Path(os.environ["ANSIBLE_VAULT_PASSWORD_FILE"]).expanduser().resolve(), \
            "ANSIBLE_VAULT_PASSWORD_FILE"
    return default_vault_password_file(env), "the default location"


def git_tracks_risk(path: Path) -> str | None:
    """A reason why `path` could end up in Git (inside a work tree and not ignored), else None."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    top = subprocess.run(["git", "-C", str(parent), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True, check=False)
    if top.returncode != 0:
        return None
    ignored = subprocess.run(["git", "-C", top.stdout.strip(), "check-ignore", "-q", str(path)],
                             capture_output=True, check=False)
    if ignored.returncode == 0:
        return None
    return f"it is inside the Git work tree {top.stdout.strip()} and not git-ignored"


def is_vault_encrypted(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(14) == b"$ANSIBLE_VAULT"
    except OSError:
        return False


class VaultError(RuntimeError):
    """The vault could not be read or written; the message names the file and the fix."""


def ansible_tool(name: str) -> str:
    """An Ansible command of the project's toolchain (beside this Python, in .venv, or on PATH)."""
    for candidate in (Path(sys.executable).parent / name, REPO_ROOT / ".venv" / "bin" / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise VaultError(f"{name} not found; run `make venv` (it installs the pinned Ansible into .venv)")


def tool_env() -> dict:
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
               ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    # The password file is always passed explicitly; an inherited one must not interfere.
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    env.pop("ANSIBLE_VAULT_IDENTITY_LIST", None)
    return env


def vault_decrypt(path: Path, password_file: Path) -> str:
    proc = subprocess.run(
        [ansible_tool("ansible-vault"), "decrypt", "--vault-password-file", str(password_file),
         "--output", "-", str(path)],
        capture_output=True, text=True, env=tool_env(), check=False, timeout=120)
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        if "Decryption failed" in proc.stderr or "HMAC" in proc.stderr:
            raise VaultError(f"{path} does not decrypt with the password in {password_file} "
                             f"(wrong vault password)")
        raise VaultError(f"{path} could not be decrypted with {password_file}: {err}")
    return proc.stdout


def vault_encrypt(text: str, password_file: Path, target: Path) -> None:
    """Encrypt `text` into `target` (mode 0600), replacing it only once the new file is complete."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        proc = subprocess.run(
            [ansible_tool("ansible-vault"), "encrypt", "--vault-password-file", str(password_file),
             "--output", str(tmp), "-"],
            input=text, capture_output=True, text=True, env=tool_env(), check=False, timeout=120)
        if proc.returncode != 0:
            raise VaultError(f"encrypting {target} failed: {proc.stderr.strip()[-500:]}")
        tmp.chmod(0o600)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


# --------------------------------------------------------------------------- YAML

class AnsibleYamlLoader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's tags (!vault, !unsafe) as plain values."""


def _tagged(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        return {"__vault__": True} if tag_suffix == "vault" else value
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


AnsibleYamlLoader.add_multi_constructor("!", _tagged)


def load_yaml_text(text: str, source: str):
    """Parse YAML text; raise ValueError naming the source and line on a syntax error."""
    try:
        return yaml.load(text, Loader=AnsibleYamlLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}, line {mark.line + 1} column {mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{where}: {problem}") from None


def dump_value(value) -> str:
    """One YAML value on one line (flow style for lists and maps)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True).strip()
    if text.endswith("\n...") or text.endswith("..."):
        text = text.rsplit("...", 1)[0].strip()
    return text
