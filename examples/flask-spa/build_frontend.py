#!/usr/bin/env python3
"""Builds the frontend: assets with content-hashed names and an index.html that loads them.

    python3 build_frontend.py SRC_DIR OUT_DIR [--api-base URL]

Copies SRC_DIR/app.js and SRC_DIR/style.css to OUT_DIR/assets/NAME.HASH.EXT, HASH being the
first 10 hex digits of the file's sha256: a changed file gets a new name, so browsers may
cache every asset for a year. Writes OUT_DIR/index.html from SRC_DIR/index.html with its
src="app.js" and href="style.css" pointing at those names and __API_BASE__ replaced by URL
(HTML-escaped; default empty: the API is on the page's own origin). Older builds of the
assets in OUT_DIR/assets are removed. The same sources give the same bytes. Standard library
only.
"""

import argparse
import hashlib
import html
import re
import sys
import urllib.parse
from pathlib import Path

ASSETS = ["app.js", "style.css"]
PLACEHOLDER = "__API_BASE__"


class BuildError(Exception):
    pass


def hashed_name(name, data):
    stem, ext = name.rsplit(".", 1)
    return f"{stem}.{hashlib.sha256(data).hexdigest()[:10]}.{ext}"


def check_api_base(url):
    """The URL without its trailing slash; it must be empty or an http(s) origin with an optional path."""
    if not url:
        return ""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise BuildError(f"--api-base must be an http(s) URL without query or fragment, not {url!r}")
    return url.rstrip("/")


def read(path):
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BuildError(f"missing source file {path}") from None


def build(src, out, api_base=""):
    """Writes OUT/index.html and OUT/assets/; returns {source name: hashed name}."""
    api_base = check_api_base(api_base)
    page = read(src / "index.html").decode("utf-8")
    assets = {name: read(src / name) for name in ASSETS}
    if page.count(PLACEHOLDER) != 1:
        raise BuildError(f"{src / 'index.html'} must contain {PLACEHOLDER} once")
    page = page.replace(PLACEHOLDER, html.escape(api_base))
    names = {}
    for name, data in assets.items():
        names[name] = hashed_name(name, data)
        page, count = re.subn(rf'((?:src|href)="){re.escape(name)}"', rf'\g<1>/assets/{names[name]}"', page)
        if count != 1:
            raise BuildError(f'{src / "index.html"} must reference {name} once (src="{name}" or href="{name}")')
    (out / "assets").mkdir(parents=True, exist_ok=True)
    for name, data in assets.items():
        stem, ext = name.rsplit(".", 1)
        for old in (out / "assets").glob(f"{stem}.{'[0-9a-f]' * 10}.{ext}"):
            old.unlink()
        (out / "assets" / names[name]).write_bytes(data)
    (out / "index.html").write_bytes(page.encode("utf-8"))
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(description="Build the frontend into OUT_DIR: index.html and hashed assets.")
    parser.add_argument("src", type=Path, metavar="SRC_DIR", help="the sources: index.html, app.js, style.css")
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="where the built frontend goes")
    parser.add_argument("--api-base", default="", metavar="URL",
                        help="the API's base URL, e.g. https://api.example.com (default: the page's own origin)")
    args = parser.parse_args(argv)
    try:
        names = build(args.src, args.out, args.api_base)
    except BuildError as exc:
        sys.exit(f"build_frontend.py: {exc}")
    for name, hashed in names.items():
        print(f"{name} -> {args.out / 'assets' / hashed}")
    print(f"index.html -> {args.out / 'index.html'}")


if __name__ == "__main__":
    main()
