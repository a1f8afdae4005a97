"""The service's gunicorn configuration for the HTTP benchmark: the same, minus worker recycling.

Production replaces each worker after about 5,000 calls (``max_requests``); the benchmark's
memory soak watches the same workers for its whole run (their RSS growth, and that none died),
so all three benchmark servers (service, ceiling, baseline) run with recycling off and otherwise
the shipped settings.
"""

from service.http.gunicorn_conf import *  # noqa: F403

max_requests = 0
