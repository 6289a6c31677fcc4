"""gunicorn settings; each can be overridden by the environment variable named."""
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 5
accesslog = "-"
errorlog = "-"
# Only nginx on the host reaches the app (published on 127.0.0.1): trust its X-Forwarded-*
# headers. Its requests come from the host's end of the project's Docker network, an address
# that changes with the network (gunicorn takes addresses, not networks).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")
