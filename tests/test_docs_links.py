"""The README and the docs: every relative link points at a file of the repository (and at a
heading that exists, when it names one), and the README stays short enough for a newcomer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = sorted([REPO / "README.md", *REPO.glob("docs/*.md"), *REPO.glob("roles/*/README.md"),
               *REPO.glob("examples/*/README.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
README_MAX_LINES = 350


def slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading: lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set:
    in_code = False
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            found.add(slug(line.lstrip("#")))
    return found


def links(path: Path) -> list:
    return [target for target in LINK.findall(path.read_text())
            if not re.match(r"^[a-z]+:", target)]  # http:, https:, mailto: are not checked here


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(doc):
    broken = []
    for target in links(doc):
        file_part, _, anchor = target.partition("#")
        destination = (doc.parent / file_part).resolve() if file_part else doc
        if not destination.exists():
            broken.append(f"{target}: no file {destination.relative_to(REPO) if REPO in destination.parents else destination}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.relative_to(REPO)}")
    assert broken == [], f"{doc.relative_to(REPO)}: " + "; ".join(broken)


def test_the_docs_have_links_to_check():
    assert len(links(REPO / "README.md")) >= 10


def test_the_readme_reads_in_ten_minutes():
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; keep it at most {README_MAX_LINES}"


def test_slug_follows_the_renderers():
    assert slug(" Releases, zero-downtime deploys and rollback") == "releases-zero-downtime-deploys-and-rollback"
    assert slug("The pre-flight check") == "the-pre-flight-check"
