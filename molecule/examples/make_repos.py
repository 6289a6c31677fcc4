#!/usr/bin/env python3
"""Make the model server's Git repository for the examples scenario.

  make_model_repo.py SOURCE_DIR BARE_REPO RETRAINED_MODEL

Tags, in commit order:
  v1  the model server as it is in examples/model-server (its model is not in Git)
  v2  a newer commit (a harmless change) that pins the same model
  v3  a new model: shipshape.yml pins the sha256 of the file RETRAINED_MODEL
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))
from make_repo import commit, git  # noqa: E402


def main() -> int:
    source, bare, retrained = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp, "model-server")
        shutil.copytree(source, work, ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", ".env", "*.npy", "artifacts"))
        git(work, "init", "-q")
        commit(work, "Model server", "v1")

        readme = work / "README.md"
        readme.write_text(readme.read_text() + "\nRelease 2: the same model, a newer commit.\n")
        commit(work, "Release 2", "v2")

        manifest = work / "shipshape.yml"
        pins = re.findall(r"sha256: ([0-9a-f]{64})", manifest.read_text())
        assert len(pins) == 1, "examples/model-server/shipshape.yml changed; update make_model_repo.py"
        new_pin = hashlib.sha256(retrained.read_bytes()).hexdigest()
        manifest.write_text(manifest.read_text().replace(pins[0], new_pin))
        commit(work, "A retrained model", "v3")

        if bare.exists():
            shutil.rmtree(bare)
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    print(bare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
