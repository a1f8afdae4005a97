"""Gunicorn configuration of epidural-cds (what ``epidural-cds serve`` runs with).

The values and the reasons for them live in the installed package, in
``service/http/gunicorn_conf.py``, so that an installed wheel has them without this repository;
this file re-exports them for operators who start gunicorn themselves::

    gunicorn -c deploy/gunicorn.conf.py service.http.wsgi:application
    epidural-cds serve --gunicorn-config deploy/gunicorn.conf.py   # the same as the default

To change a value, copy this file and assign it below the import (e.g. ``timeout = 12``).
"""

from service.http.gunicorn_conf import *  # noqa: F403
