"""A bytecode cache for the module code Ansible sends to a test-bed host.

Installed only in the test-bed host images (scripts/build_images.py), never by a role.
Ansible runs each task by importing its module and module_utils from a zip archive it sends
along (AnsiballZ). Python compiles source imported from a zip on every import and never
caches it: about 0.13 s of CPU per task on these hosts, a fifth of a trivial task.
This keeps the compiled code of those sources in /var/cache/shipshape-ansiballz, keyed by
the source's hash and its path inside the archive, so each source is compiled once per host.
The code that runs is what a compile would give; tracebacks name the archive of the run.

Only root's imports use it (tasks run with become): the directory is root's alone.
`scripts/bench_tasks.py` measures what it saves.
"""

import marshal
import os
import sys
import zipimport

CACHE_DIR = "/var/cache/shipshape-ansiballz"
# AnsiballZ writes its archive as .../ansible_<module>_payload.zip
MARKER = "_payload.zip" + os.sep
_compile_source = getattr(zipimport, "_compile_source", None)


def _renamed(code, filename):
    """The code object with every nested code object's file name set to filename."""
    consts = tuple(_renamed(const, filename) if isinstance(const, type(code)) else const
                   for const in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def cached_compile(pathname, source):
    if MARKER not in pathname:
        return _compile_source(pathname, source)
    import hashlib  # here, not at start-up: every python3 on the host loads this file

    inside = pathname.split(MARKER, 1)[1]
    key = hashlib.sha256(inside.encode() + b"\0" + source).hexdigest()
    path = os.path.join(CACHE_DIR, "%s-%s.code" % (sys.implementation.cache_tag, key))
    try:
        with open(path, "rb") as handle:
            return _renamed(marshal.load(handle), pathname)
    except (OSError, EOFError, ValueError, TypeError):
        pass
    code = _compile_source(pathname, source)
    try:
        os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
        partial = "%s.%d.partial" % (path, os.getpid())
        with open(partial, "wb") as handle:
            marshal.dump(code, handle)
        os.replace(partial, path)
    except OSError:
        pass
    return code


if _compile_source is not None and os.geteuid() == 0:
    zipimport._compile_source = cached_compile
