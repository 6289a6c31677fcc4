"""Create the admin user from DJANGO_SUPERUSER_* when it is absent; do nothing when it exists.

Prints "superuser NAME created" or "superuser NAME exists" and exits 0 either way; never
prints the password and never changes an existing user. Exits 1 with a message naming the
variable when one is missing.
"""

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction


class Command(BaseCommand):
    help = (
        "Create the superuser named by DJANGO_SUPERUSER_USERNAME (with DJANGO_SUPERUSER_EMAIL and "
        "DJANGO_SUPERUSER_PASSWORD) when it does not exist. Idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", help="overrides DJANGO_SUPERUSER_USERNAME")
        parser.add_argument("--email", help="overrides DJANGO_SUPERUSER_EMAIL")

    def handle(self, *args, **options):
        username = options["username"] or os.environ.get("DJANGO_SUPERUSER_USERNAME", "")
        email = options["email"] or os.environ.get("DJANGO_SUPERUSER_EMAIL", "")
        if not username:
            raise CommandError("DJANGO_SUPERUSER_USERNAME is not set (or pass --username)")
        User = get_user_model()
        if User.objects.filter(**{User.USERNAME_FIELD: username}).exists():
            self.stdout.write(f"superuser {username} exists")
            return
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        if not password:
            raise CommandError("DJANGO_SUPERUSER_PASSWORD is not set; the user was not created")
        try:
            with transaction.atomic():
                User.objects.create_superuser(username=username, email=email, password=password)
        except IntegrityError:  # created concurrently by another run
            self.stdout.write(f"superuser {username} exists")
            return
        self.stdout.write(f"superuser {username} created")
