#!/usr/bin/env python3
"""Build the example app's images (web and db) and print their tags.

Each image is tagged NAME:<hash>, the hash covering its build context (every file the
.dockerignore lets through, with its content and executable bit), the base image's id and
the build arguments. An image whose tag is already present is not rebuilt, so a second run
costs a few file reads. Both images build in parallel; nothing is tagged unless its build
succeeded.

    python3 examples/images.py --base shipshape/base:debian13
    web=shipshape/example-web:1a2b3c4d5e6f
    db=shipshape/example-postgres:6f5e4d3c2b1a

From Python: `images.build(base=...)` returns {"web": tag, "db": tag}.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Bump when the way images are built changes in a way the hash does not see.
RECIPE_VERSION = 1

DEFAULT_BASE = os.environ.get("SHIPSHAPE_BASE_IMAGE", "shipshape/base:debian13")

# key -> (build context, image repository)
IMAGES = {
    "web": (HERE / "django-app", "shipshape/example-web"),
    "db": (HERE / "postgres", "shipshape/example-postgres"),
}


class BuildError(RuntimeError):
    pass


def _ignore_rules(context: Path) -> list[tuple[bool, str]]:
    """The .dockerignore patterns as (negated, pattern), in order; the last match wins."""
    path = context / ".dockerignore"
    rules = []
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = line[1:] if negated else line
            rules.append((negated, pattern.strip("/")))
    return rules


def _matches(pattern: str, rel: str) -> bool:
    """Does a .dockerignore pattern match rel or one of its parent directories?"""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    if pattern.startswith("**/"):
        tail = pattern[3:]
        return any(fnmatch.fnmatchcase(part, tail) for part in parts) or any(
            fnmatch.fnmatchcase(c, tail) for c in candidates)
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)


def context_files(context: Path) -> list[str]:
    """Relative paths of the files docker sends for this context, sorted."""
    rules = _ignore_rules(context)
    files = []
    for root, dirs, names in os.walk(context):
        dirs.sort()
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(root, name), context).replace(os.sep, "/")
            ignored = False
            for negated, pattern in rules:
                if _matches(pattern, rel):
                    ignored = not negated
            if not ignored:
                files.append(rel)
    return sorted(files)


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise BuildError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def base_image_id(base: str) -> str:
    proc = _docker("image", "inspect", "--format", "{{.Id}}", base, check=False)
    if proc.returncode != 0:
        pull = _docker("pull", base, check=False)
        if pull.returncode != 0:
            raise BuildError(
                f"the base image {base} is not here and cannot be pulled ({pull.stderr.strip()}); "
                "build it first (make images) or pass --base with an image that exists")
        proc = _docker("image", "inspect", "--format", "{{.Id}}", base)
    return proc.stdout.strip()


def context_hash(context: Path, base_id: str, build_args: dict[str, str]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"recipe": RECIPE_VERSION, "base": base_id, "args": build_args},
                             sort_keys=True).encode())
    for rel in context_files(context):
        path = context / rel
        digest.update(f"\0{rel}\0{os.access(path, os.X_OK):d}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def _build_args(key: str, base: str, app_version: str | None) -> dict[str, str]:
    args = {"BASE_IMAGE": base}
    if key == "web" and app_version:
        args["APP_VERSION"] = app_version
    return args


def tags(base: str = DEFAULT_BASE, app_version: str | None = None) -> dict[str, str]:
    """The tags the images of this source would have, without building anything."""
    base_id = base_image_id(base)
    result = {}
    for key, (context, repository) in IMAGES.items():
        result[key] = f"{repository}:{context_hash(context, base_id, _build_args(key, base, app_version))}"
    return result


def image_exists(tag: str) -> bool:
    return _docker("image", "inspect", tag, check=False).returncode == 0


def _build_one(key: str, tag: str, base: str, app_version: str | None, log) -> str:
    context = IMAGES[key][0]
    cmd = ["docker", "build", "--pull=false", "-t", tag]
    for name, value in _build_args(key, base, app_version).items():
        cmd += ["--build-arg", f"{name}={value}"]
    cmd.append(str(context))
    with tempfile.TemporaryFile(mode="w+") as out:
        env = dict(os.environ, DOCKER_BUILDKIT=os.environ.get("DOCKER_BUILDKIT", "0"))
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, check=False)
        if proc.returncode != 0:
            out.seek(0)
            tail = out.read()[-4000:]
            raise BuildError(f"building {tag} from {context} failed (exit {proc.returncode}):\n{tail}")
    log(f"built {tag}")
    return tag


def build(base: str = DEFAULT_BASE, app_version: str | None = None, only: list[str] | None = None,
          force: bool = False, log=None) -> dict[str, str]:
    """Build the images whose tag is absent (all of them with force); returns {key: tag}."""
    log = log or (lambda message: print(message, file=sys.stderr))
    wanted = {key: tag for key, tag in tags(base, app_version).items() if not only or key in only}
    todo = {key: tag for key, tag in wanted.items() if force or not image_exists(tag)}
    for key, tag in wanted.items():
        if key not in todo:
            log(f"cached {tag}")
    if todo:
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            futures = [pool.submit(_build_one, key, tag, base, app_version, log) for key, tag in todo.items()]
            errors = []
            for future in futures:
                try:
                    future.result()
                except BuildError as exc:
                    errors.append(str(exc))
            if errors:
                raise BuildError("\n\n".join(errors))
    return wanted


def prune(keep: dict[str, str], log=None) -> list[str]:
    """Remove the other tags of the example images (older versions of the source); returns them."""
    log = log or (lambda message: print(message, file=sys.stderr))
    removed = []
    for _context, repository in IMAGES.values():
        listed = _docker("images", "--format", "{{.Repository}}:{{.Tag}}", repository).stdout.split()
        for tag in listed:
            if tag not in keep.values() and _docker("rmi", tag, check=False).returncode == 0:
                log(f"removed {tag}")
                removed.append(tag)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build the example app's images (web: Django + gunicorn; db: PostgreSQL) with "
                    "content-hash tags, skipping images already built, and print KEY=TAG lines.")
    parser.add_argument("--base", default=DEFAULT_BASE,
                        help="base image both images build FROM (default: %(default)s; "
                             "SHIPSHAPE_BASE_IMAGE sets the default; debian:trixie-slim where a registry answers)")
    parser.add_argument("--app-version", help="version baked into the web image's VERSION file (e.g. a commit)")
    parser.add_argument("--only", choices=sorted(IMAGES), action="append",
                        help="build only this image (repeatable)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the tag exists")
    parser.add_argument("--print-only", action="store_true", help="print the tags without building")
    parser.add_argument("--json", action="store_true", help='print {"web": TAG, "db": TAG} instead')
    parser.add_argument("--prune", action="store_true",
                        help="afterwards remove the other tags of these images (builds of older sources)")
    args = parser.parse_args(argv)
    try:
        if args.print_only:
            result = {k: v for k, v in tags(args.base, args.app_version).items()
                      if not args.only or k in args.only}
        else:
            result = build(args.base, args.app_version, args.only, args.force)
        if args.prune:
            prune(tags(args.base, args.app_version))
    except BuildError as exc:
        print(f"images.py: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, tag in result.items():
            print(f"{key}={tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
