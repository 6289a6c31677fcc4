"""GET /health: 200 {"status": "ok", ...} when the database answers and every migration is applied.

Answers before any other middleware, so a health check needs no allowed Host header and is
never redirected to HTTPS. 503 when the database is unreachable or migrations are pending.
"""

import logging
import os

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse

log = logging.getLogger(__name__)

HEALTH_PATHS = {"/health", "/health/"}


def app_version():
    version = os.environ.get("APP_VERSION", "").strip()
    if version:
        return version
    try:
        return settings.VERSION_FILE.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def check():
    """Returns (http status, body)."""
    body = {"status": "ok", "version": app_version(), "database": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # any database failure makes the app unhealthy
        log.warning("health check: database unreachable: %s", exc.__class__.__name__)
        connection.close()
        body.update(status="error", database="unreachable")
        return 503, body
    if pending:
        body.update(status="error", migrations="pending", pending=len(pending))
        return 503, body
    body["migrations"] = "applied"
    return 200, body


class HealthMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path in HEALTH_PATHS and request.method in {"GET", "HEAD"}:
            status, body = check()
            response = JsonResponse(body, status=status)
            response["Cache-Control"] = "no-store"
            return response
        return self.get_response(request)
