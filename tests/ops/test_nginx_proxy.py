"""Behind a real nginx: TLS terminated at the proxy, the service at ``/cds/epidural``.

The service runs in the production profile (JWT required) under real gunicorn with
``EPIDURAL_CDS_PUBLIC_BASE_URL=https://localhost:<nginx port>/cds/epidural`` and one trusted
proxy hop. nginx (tests/support/nginx.py) listens with a self-signed certificate on two ports:
one passes the prefix through to the upstream, the other strips it. What must hold:

* a call signed for the public ``https://.../cds/epidural/cds-services/...`` audience is
  accepted through either kind of proxy;
* one signed for the internal URL the proxy forwards to (``http://127.0.0.1:<port>/...``) is
  refused, and the log names the expected and the received audience;
* discovery through the proxy, authenticated for the public discovery URL, lists the service;
* a client's own ``X-Forwarded-For`` is not believed beyond the one trusted hop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.auth.conftest import Signer
from tests.security.conftest import ISS_ES, SERVICE_ID, mint, s1_hook_body, write_issuers
from tests.support import serve
from tests.support.nginx import PREFIX, NginxProxy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxied(
    tmp_path_factory: pytest.TempPathFactory, ec_signer: Signer
) -> Iterator[tuple[NginxProxy, serve.Served, str]]:
    tmp = tmp_path_factory.mktemp("nginx-proxy")
    issuers = write_issuers(
        tmp / "issuers.yaml", [{"iss": ISS_ES, "jwks": {"keys": [ec_signer.public_jwk()]}}]
    )
    upstream = serve.free_port()
    with NginxProxy(upstream) as proxy:
        public = proxy.url(proxy.pass_port, PREFIX)
        env = {
            "EPIDURAL_CDS_PROFILE": "production",
            "EPIDURAL_CDS_ISSUERS_FILE": str(issuers),
            "EPIDURAL_CDS_PUBLIC_BASE_URL": public,
            "EPIDURAL_CDS_TRUSTED_PROXY_HOPS": "1",
            "EPIDURAL_CDS_DATA_DIR": str(tmp / "data"),
        }
        served = serve.start(tmp / "serve.log", env, workers=1, port=upstream)
        try:
            yield proxy, served, public
        finally:
            served.stop()


def _post(proxy: NginxProxy, url: str, token: str, **headers: str) -> Any:
    with serve.session() as http:
        return http.post(
            url,
            json=s1_hook_body(),
            headers={"Authorization": f"Bearer {token}", **headers},
            verify=str(proxy.certificate),
            timeout=30,
        )


def test_a_call_signed_for_the_public_url_is_accepted_through_tls_and_the_prefix(
    proxied: tuple[NginxProxy, serve.Served, str], ec_signer: Signer
) -> None:
    proxy, served, public = proxied
    audience = f"{public}/cds-services/{SERVICE_ID}"
    assert audience.startswith("https://localhost:") and "/cds/epidural/cds-services/" in audience
    response = _post(proxy, audience, mint(ec_signer, ISS_ES, aud=audience))
    assert response.status_code == 200, response.text
    assert response.json()["cards"][0]["indicator"] == "critical"
    hook_instance = json.loads(response.request.body)["hookInstance"]
    access = served.wait_for_record(
        lambda r: r["logger"] == "gunicorn.access" and r.get("hookInstance") == hook_instance
    )
    assert access["path"] == f"{PREFIX}/cds-services/{SERVICE_ID}"  # the prefix arrived


def test_a_proxy_that_strips_the_prefix_reaches_the_same_service(
    proxied: tuple[NginxProxy, serve.Served, str], ec_signer: Signer
) -> None:
    proxy, _served, public = proxied
    audience = f"{public}/cds-services/{SERVICE_ID}"
    url = proxy.url(proxy.strip_port, f"{PREFIX}/cds-services/{SERVICE_ID}")
    response = _post(proxy, url, mint(ec_signer, ISS_ES, aud=audience))
    assert response.status_code == 200, response.text
    assert response.json()["cards"]


def test_a_call_signed_for_the_internal_url_is_refused_naming_both_audiences(
    proxied: tuple[NginxProxy, serve.Served, str], ec_signer: Signer
) -> None:
    proxy, served, public = proxied
    internal = f"{served.base}/cds-services/{SERVICE_ID}"
    response = _post(
        proxy, f"{public}/cds-services/{SERVICE_ID}", mint(ec_signer, ISS_ES, aud=internal)
    )
    assert response.status_code == 401, response.text
    refusals = [r for r in served.records() if r.get("reason") == "wrong_audience"]
    assert refusals, served.output[-2000:]
    assert refusals[-1]["expectedAudience"] == f"{public}/cds-services/{SERVICE_ID}"
    assert refusals[-1]["receivedAudience"] == internal


def test_discovery_through_the_proxy_lists_the_service_under_the_public_url(
    proxied: tuple[NginxProxy, serve.Served, str], ec_signer: Signer
) -> None:
    proxy, _served, public = proxied
    token = mint(ec_signer, ISS_ES, aud=f"{public}/cds-services")
    with serve.session() as http:
        response = http.get(
            f"{public}/cds-services",
            headers={"Authorization": f"Bearer {token}"},
            verify=str(proxy.certificate),
            timeout=30,
        )
    assert response.status_code == 200, response.text
    # The patient-view service first; the order hooks (one id, two entries) follow.
    assert next(s["id"] for s in response.json()["services"]) == SERVICE_ID


def test_a_forwarded_for_sent_by_the_client_is_not_believed(
    proxied: tuple[NginxProxy, serve.Served, str], ec_signer: Signer
) -> None:
    proxy, served, public = proxied
    audience = f"{public}/cds-services/{SERVICE_ID}"
    token = mint(ec_signer, ISS_ES, aud=audience)
    response = _post(proxy, audience, token, **{"X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200, response.text
    hook_instance = json.loads(response.request.body)["hookInstance"]
    access = served.wait_for_record(
        lambda r: r["logger"] == "gunicorn.access" and r.get("hookInstance") == hook_instance
    )
    # nginx appended the address it saw (loopback); one trusted hop takes only that one.
    assert access["remote"] == "127.0.0.1"
    assert "203.0.113.9" not in served.output
