"""A background worker of the example app: a service that must never run twice.

Every few seconds it logs a heartbeat with the number of notes. It stands for the workers
and schedulers real apps have (a queue consumer, a cron-like scheduler): two of them at once
would process the same job twice, so a deploy stops it in the old slot before it starts in
the new one (app_once_services). It stops at once on SIGTERM. It touches /tmp/heartbeat at every beat, for its health check.
"""

import signal
import threading
from pathlib import Path

from django.core.management.base import BaseCommand
from django.db import connection

from notes.models import Note


class Command(BaseCommand):
    help = "Run the example background worker (a heartbeat every --interval seconds) until SIGTERM."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=5.0)

    def handle(self, *args, **options):
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        heartbeat = Path("/tmp/heartbeat")  # the container's health check reads its age
        heartbeat.touch()
        self.stdout.write("worker started", ending="\n")
        self.stdout.flush()
        while not stop.wait(options["interval"]):
            heartbeat.touch()
            try:
                count = Note.objects.count()
                self.stdout.write(f"worker alive: {count} notes", ending="\n")
            except Exception as error:  # the database may be away for a moment; keep running
                self.stdout.write(f"worker alive: database unavailable ({type(error).__name__})", ending="\n")
                connection.close()
            self.stdout.flush()
        self.stdout.write("worker stopped", ending="\n")
