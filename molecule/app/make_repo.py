#!/usr/bin/env python3
"""Make the example app's Git repository for the app scenario.

  make_repo.py SOURCE_DIR BARE_REPO

Tags, in commit order:
  v1       the example app as it is in examples/
  v2       a newer commit (a harmless change), for the redeploy test
  newkey   .env.example names a key the inventory does not set
  broken   a migration that fails, for the failed-deploy test
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GIT = ["git", "-c", "user.name=Example Dev", "-c", "user.email=dev@example.test",
       "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]

BROKEN_MIGRATION = '''from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("notes", "{previous}")]
    operations = [
        migrations.RunSQL("ALTER TABLE table_that_does_not_exist ADD COLUMN x integer"),
    ]
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, message: str, tag: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    git(repo, "tag", tag)


def main() -> int:
    source, bare = Path(sys.argv[1]), Path(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp, "example")
        shutil.copytree(source, work, ignore=shutil.ignore_patterns(
            "__pycache__", "*.pyc", ".env", ".compose.env"))
        git(work, "init", "-q")
        commit(work, "Example app", "v1")

        readme = work / "README.md"
        readme.write_text(readme.read_text() + "\nRelease 2: the same app, a newer commit.\n"
                          if readme.exists() else "Release 2\n")
        commit(work, "Release 2", "v2")

        example = work / ".env.example"
        example.write_text(example.read_text() + "\n# A setting the inventory does not know yet\n"
                           "PAYMENT_API_KEY=CHANGE_ME\n")
        commit(work, "Add a payment provider key", "newkey")
        git(work, "checkout", "-q", "v2", "--", ".env.example")

        migrations = sorted(p.stem for p in (work / "notes/migrations").glob("0*.py"))
        (work / "notes/migrations/0999_broken.py").write_text(
            BROKEN_MIGRATION.format(previous=migrations[-1]))
        commit(work, "A migration that fails", "broken")

        if bare.exists():
            shutil.rmtree(bare)
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    print(bare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
