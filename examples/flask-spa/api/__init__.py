"""The flask-spa API: the JSON endpoints under /api/ that the single-page frontend calls."""
