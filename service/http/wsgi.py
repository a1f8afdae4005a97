"""The WSGI application for running gunicorn directly (``service.http.wsgi:application``).

``epidural-cds serve`` is the usual way to start the service; this module is for sites that run
gunicorn themselves with the shipped configuration::

    gunicorn -c python:service.http.gunicorn_conf service.http.wsgi:application

The configuration must be loaded first (gunicorn does so): it prepares the metrics directory
before this module imports prometheus-client. Settings come from ``EPIDURAL_CDS_*`` as always.
"""

from __future__ import annotations

from service.config import Settings
from service.http.app import create_app
from service.http.logjson import configure_root

_settings = Settings.from_env()
configure_root(_settings.log_level)
application = create_app(_settings)
