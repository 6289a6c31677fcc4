"""Files of the app role's modules (the deploy lock, the release ledger, the files app_write
writes): owners given by name, modes given as octal text, and a file written whole before it
takes its name."""

from __future__ import annotations

import grp
import os
import pwd
import tempfile


def resolve_ids(owner: str | None, group: str | None) -> tuple[int, int]:
    """Return the (uid, gid) for a user and group given by name or number; -1 for unset.

    Raises ValueError naming an unknown user or group."""
    uid = gid = -1
    if owner:
        try:
            uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
        except KeyError:
            raise ValueError(f"there is no user {owner!r}") from None
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise ValueError(f"there is no group {group!r}") from None
    return uid, gid


def write_whole(path: str, text: str, mode: int, uid: int = -1, gid: int = -1) -> str:
    """Write *text* to a new temporary file beside *path*, with its mode and owner, flushed
    to disk; return the temporary file's path. The caller gives it its name (os.replace or
    os.link) and removes it when that fails."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if uid != -1 or gid != -1:
                os.fchown(handle.fileno(), uid, gid)
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(temp)
        raise
    return temp


def write_atomic(path: str, text: str, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Replace the file at *path* with *text* in one step, with the given mode and owner.

    The text goes to a temporary file in the same directory, which gets its mode and owner,
    is flushed to disk and then renamed over *path*."""
    directory = os.path.dirname(os.path.abspath(path))
    temp = write_whole(path, text, mode, uid, gid)
    try:
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def parse_mode(mode) -> int:
    """Return the permission bits of *mode*: an octal string ('0640') or an int as YAML reads 0640."""
    if isinstance(mode, int) and not isinstance(mode, bool):
        value = mode
    else:
        text = str(mode).strip()
        if not text or any(char not in "01234567" for char in text):
            raise ValueError(f"mode must be an octal number such as '0640', not {mode!r}")
        value = int(text, 8)
    if not 0 <= value <= 0o7777:
        raise ValueError(f"mode {mode!r} is out of range")
    return value
