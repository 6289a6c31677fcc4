#!/usr/bin/env python3
"""Make the example apps' Git repositories for the examples scenario.

  make_repos.py model SOURCE_DIR BARE_REPO RETRAINED_MODEL
    v1  the model server as it is in examples/model-server (its model is not in Git)
    v2  a newer commit (a harmless change) that pins the same model
    v3  a new model: shipshape.yml pins the sha256 of the file RETRAINED_MODEL
  make_repos.py spa SOURCE_DIR BARE_REPO
    v1  the Flask API and its frontend as they are in examples/flask-spa
    v2  a new look: the frontend's stylesheet changed, so its hashed name too
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))
from make_repo import commit, git, publish  # noqa: E402


def model(work: Path, retrained: Path) -> None:
    commit(work, "Model server", "v1")
    readme = work / "README.md"
    readme.write_text(readme.read_text() + "\nRelease 2: the same model, a newer commit.\n")
    commit(work, "Release 2", "v2")
    manifest = work / "shipshape.yml"
    pins = re.findall(r"sha256: ([0-9a-f]{64})", manifest.read_text())
    assert len(pins) == 1, "examples/model-server/shipshape.yml changed; update make_repos.py"
    new_pin = hashlib.sha256(retrained.read_bytes()).hexdigest()
    manifest.write_text(manifest.read_text().replace(pins[0], new_pin))
    commit(work, "A retrained model", "v3")


def spa(work: Path) -> None:
    commit(work, "Flask API and its frontend", "v1")
    style = work / "frontend/style.css"
    style.write_text(style.read_text() + "\nh1 { letter-spacing: 0.02em; }\n")
    commit(work, "A new look", "v2")


def main() -> int:
    kind, source, bare = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp, kind)
        shutil.copytree(source, work, ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", ".env", "*.npy", "artifacts", "dist"))
        git(work, "init", "-q")
        if kind == "model":
            model(work, Path(sys.argv[4]))
        else:
            spa(work)
        publish(work, bare)
    print(bare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
