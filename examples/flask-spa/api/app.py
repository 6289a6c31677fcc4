"""The API: GET /api/health, GET /api/items and GET /api/info, all JSON.

Cross-origin requests (CORS) are answered for the exact origins in CORS_ORIGINS
(comma-separated, e.g. https://app.example.com); when it is empty the API sends no CORS
header, which is all it needs while the frontend is served from the API's own origin.
"""

import json
import os
from pathlib import Path

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

VERSION_FILE = Path(__file__).resolve().parent.parent / "VERSION"

ITEMS = [
    {"id": 1, "title": "Deploy without downtime"},
    {"id": 2, "title": "Serve the frontend from nginx"},
    {"id": 3, "title": "Proxy /api/ to the app"},
    {"id": 4, "title": "Roll back in seconds"},
]

PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "600",
}


def app_version():
    version = os.environ.get("APP_VERSION", "").strip()
    if version:
        return version
    try:
        return VERSION_FILE.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def create_app():
    app = Flask(__name__)
    cors_origins = {origin.strip() for origin in os.environ.get("CORS_ORIGINS", "").split(",") if origin.strip()}

    @app.before_request
    def preflight():
        # A browser asks before a cross-origin request it may not send unasked.
        if (request.method == "OPTIONS" and request.path.startswith("/api/")
                and request.headers.get("Origin") in cors_origins):
            return "", 204, PREFLIGHT_HEADERS

    @app.after_request
    def cors(response):
        if cors_origins:
            # The answer depends on Origin: caches must keep one per origin.
            response.vary.add("Origin")
            origin = request.headers.get("Origin")
            if origin in cors_origins:
                response.headers["Access-Control-Allow-Origin"] = origin
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc):
        # Errors in JSON too (404 for an unknown path, 405 for another method).
        response = exc.get_response()
        response.data = json.dumps({"error": exc.name})
        response.content_type = "application/json"
        return response

    @app.get("/api/health")
    def health():
        response = jsonify(status="ok", version=app_version())
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/api/items")
    def items():
        return jsonify(ITEMS)

    @app.get("/api/info")
    def info():
        return jsonify(name="flask-spa", version=app_version(),
                       environment=os.environ.get("APP_ENVIRONMENT", "").strip() or "production")

    return app


app = create_app()
