"""How a request reached us: through trusted proxies, and under the public URL's path prefix.

Hospitals publish the service behind a TLS proxy, often under a path, e.g.
``https://engine.hospital.org/cds/epidural``. Two things follow:

* **Forwarded headers.** ``X-Forwarded-For``/``-Proto``/``-Host``/``-Port``/``-Prefix`` say who
  the client was and which URL it used, but any client can send them. They are honoured only
  from the configured number of proxy hops (``EPIDURAL_CDS_TRUSTED_PROXY_HOPS``, werkzeug's
  ``ProxyFix``, which takes the right-most values each proxy appended); with the default 0 they
  are ignored. They never affect authentication: JWT ``aud`` is always checked against the
  configured public URL (:meth:`service.security.trust.ClientTrust.verify`). Each trusted proxy
  must set (or clear) every one of these headers itself, or a client's own value of a header
  the proxy leaves alone (``X-Forwarded-Prefix``, say) passes through as if the proxy had sent it.
* **Path prefix.** When ``EPIDURAL_CDS_PUBLIC_BASE_URL`` carries a path, the service answers
  under it whether the proxy strips it or passes it on: :class:`PrefixMount` moves a leading
  prefix from ``PATH_INFO`` to ``SCRIPT_NAME`` (the WSGI way of saying "mounted here"), and a
  request without it is routed as it is. Probes (``/healthz``, ``/readyz``) thus work both on
  the pod and through the proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from werkzeug.middleware.proxy_fix import ProxyFix

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def url_prefix(public_base_url: str | None) -> str:
    """The path of the public base URL without a trailing slash (``""`` for none)."""
    if not public_base_url:
        return ""
    return urlsplit(public_base_url).path.rstrip("/")


class PrefixMount:
    """WSGI middleware: serve ``app`` at ``prefix`` and at the root (see the module docstring)."""

    def __init__(self, app: WsgiApp, prefix: str) -> None:
        """``prefix`` starts with ``/`` and has no trailing slash."""
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"a path prefix starts with / and does not end with one: {prefix!r}")
        self.app = app
        self.prefix = prefix

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Strip the prefix from ``PATH_INFO`` into ``SCRIPT_NAME`` when the path starts with it."""
        path: str = environ.get("PATH_INFO", "")
        if path == self.prefix or path.startswith(self.prefix + "/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.prefix
            environ["PATH_INFO"] = path[len(self.prefix) :]
        return self.app(environ, start_response)


def wrap(app: WsgiApp, public_base_url: str | None, trusted_proxy_hops: int) -> WsgiApp:
    """``app`` under the public URL's prefix, behind ``trusted_proxy_hops`` proxies."""
    prefix = url_prefix(public_base_url)
    wrapped: WsgiApp = PrefixMount(app, prefix) if prefix else app
    if trusted_proxy_hops > 0:
        hops = trusted_proxy_hops
        wrapped = ProxyFix(
            wrapped, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops
        )
    return wrapped
