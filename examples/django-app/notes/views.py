"""A small JSON API: GET /api/notes lists the notes, POST /api/notes creates one.

POST takes {"title": "...", "body": "..."}; when API_TOKEN is set, it also needs the header
X-Api-Token with that value.
"""

import hmac
import json

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils.html import escape
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from exampleapp.health import app_version

from .models import Note

MAX_BODY = 10_000


def error(status, message):
    return JsonResponse({"error": message}, status=status)


def token_ok(request):
    if not settings.API_TOKEN:
        return True
    given = request.headers.get("X-Api-Token", "")
    return hmac.compare_digest(given.encode(), settings.API_TOKEN.encode())


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def notes(request):
    if request.method != "POST":
        return JsonResponse([note.as_dict() for note in Note.objects.all()], safe=False)
    if not token_ok(request):
        return error(401, "missing or wrong X-Api-Token header")
    try:
        data = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return error(400, "the request body is not JSON")
    if not isinstance(data, dict):
        return error(400, 'send a JSON object: {"title": "...", "body": "..."}')
    title, body = data.get("title"), data.get("body", "")
    if not isinstance(title, str) or not title.strip() or len(title) > 200:
        return error(400, "title must be a non-empty string of at most 200 characters")
    if not isinstance(body, str) or len(body) > MAX_BODY:
        return error(400, f"body must be a string of at most {MAX_BODY} characters")
    note = Note.objects.create(title=title.strip(), body=body)
    return JsonResponse(note.as_dict(), status=201)


@require_GET
def note_detail(request, note_id):
    note = Note.objects.filter(id=note_id).first()
    if note is None:
        return error(404, "no such note")
    return JsonResponse(note.as_dict())


@require_GET
def index(request):
    rows = "".join(f"<li>{escape(note.title)}</li>" for note in Note.objects.order_by("-created")[:20])
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Notes</title></head><body>"
        f"<h1>Notes</h1><p>Version {escape(app_version())}. "
        f"{Note.objects.count()} notes. <a href='/admin/'>Admin</a></p><ul>{rows}</ul></body></html>"
    )
    return HttpResponse(html)
