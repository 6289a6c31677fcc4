#!/usr/bin/env python3
"""Make the example app's Git repository for the app scenario.

  make_repo.py SOURCE_DIR BARE_REPO

Tags, in commit order:
  v1       the example app as it is in examples/
  v2       a newer commit (a harmless change), for the redeploy test
  newkey   .env.example names a key the inventory does not set
  broken   a migration that fails, for the failed-deploy test
and on a branch from v2 (the release tests on the demo server and in the multihost scenario):
  unhealthy  v2 whose /health answers 503: a release that fails its health gate
  v3         v2 and a new migration (a column added): a schema older releases do not know
and on a branch from v2 (the masking test of the app scenario):
  leaky-migration  v2 and a migration that fails with the app's secrets in its error message
and on a branch from v2 (the app contract test of the app scenario):
  badmanifest  v2 whose shipshape.yml gives a hook's command as a string, not a list
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


# Fails like a migration that reports its connection settings: the values of the app's
# secrets in the environment end up in the error message, which the deploy must mask.
LEAKY_MIGRATION = '''import os

from django.db import migrations

SECRETS = ("SECRET_KEY", "POSTGRES_PASSWORD", "DJANGO_SUPERUSER_PASSWORD", "API_TOKEN", "DATABASE_URL")


def fail(apps, schema_editor):
    settings = " ".join("%s=%s" % (name, os.environ[name]) for name in SECRETS if os.environ.get(name))
    raise RuntimeError("leaky migration cannot go on with " + settings)


class Migration(migrations.Migration):
    dependencies = [("notes", "{previous}")]
    operations = [
        migrations.RunPython(fail, migrations.RunPython.noop),
    ]
'''


PINNED_MIGRATION = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [
        migrations.AddField(model_name="note", name="pinned", field=models.BooleanField(default=False)),
    ]
'''


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, message: str, tag: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    git(repo, "tag", tag)


def publish(work: Path, bare: Path) -> None:
    """Replace the bare repository BARE with a clone of the work tree WORK."""
    if bare.exists():
        shutil.rmtree(bare)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)


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

        git(work, "checkout", "-q", "-b", "releases", "v2")
        health = work / "exampleapp/health.py"
        healthy = health.read_text()
        marker = '    body["migrations"] = "applied"\n    return 200, body\n'
        assert marker in healthy, "exampleapp/health.py changed; update make_repo.py"
        health.write_text(healthy.replace(marker, '    body.update(status="error", reason="broken on purpose")\n'
                                                  '    return 503, body\n'))
        commit(work, "A release whose health check fails", "unhealthy")
        health.write_text(healthy)

        models = work / "notes/models.py"
        field = "    created = models.DateTimeField(auto_now_add=True, db_index=True)\n"
        assert field in models.read_text(), "notes/models.py changed; update make_repo.py"
        models.write_text(models.read_text().replace(
            field, field + "    pinned = models.BooleanField(default=False)\n"))
        (work / "notes/migrations/0002_note_pinned.py").write_text(PINNED_MIGRATION)
        commit(work, "Notes can be pinned (a new column)", "v3")

        git(work, "checkout", "-q", "-b", "leaky", "v2")
        migrations = sorted(p.stem for p in (work / "notes/migrations").glob("0*.py"))
        (work / "notes/migrations/0999_leaky.py").write_text(
            LEAKY_MIGRATION.replace("{previous}", migrations[-1]))
        commit(work, "A migration that fails with the secrets in its message", "leaky-migration")

        git(work, "checkout", "-q", "-b", "contract", "v2")
        manifest = work / "shipshape.yml"
        manifest.write_text(manifest.read_text() + "hooks:\n  before_switch:\n    - name: migrate\n"
                                                   "      argv: python3 manage.py migrate\n")
        commit(work, "A manifest that breaks the app contract", "badmanifest")
        git(work, "checkout", "-q", "releases")

        publish(work, bare)
    print(bare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
