"""Log forging: no caller-supplied value can start a new log record, in any log.

Before the JSON logs, a URL-encoded newline in a request path (no token needed) or a newline in
``hookInstance`` started a new, convincing line in the application log and in gunicorn's access
log. Now every record is one JSON object (:mod:`service.http.logjson`), and this is checked two
ways:

* the formatter alone, on every character that any line splitter treats as a line break, plus
  the other control characters, in the message, its arguments, structured fields and the
  correlation id: the output is one line of printable ASCII that decodes to the same values;
* real gunicorn (production profile, JWT on, log level DEBUG) under hostile input in the path,
  the query, headers, the request line, ``hookInstance``, a signed token's ``iss`` and ``aud``,
  and an unknown service id: every line of the whole output parses as one JSON object, the
  output is printable ASCII plus the newlines that end records, and the hostile values are
  present, encoded, where they were logged.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import Iterator

import pytest

from service import correlation
from service.http.logjson import FIELDS, JsonFormatter
from tests.auth.conftest import Signer
from tests.security.conftest import ISS_ES, SERVICE_ID, mint, s1_hook_body, write_issuers
from tests.support import serve

BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
CONTROLS = "\x00\x07\x08\x1b[31m\x7f\t"
FORGED = '{"level":"CRITICAL","message":"forged"}'
HOSTILE = f"x{BREAKS}{CONTROLS}\n{FORGED}\r\n{FORGED}"


def _printable_line(text: str) -> bool:
    return all(" " <= ch <= "~" for ch in text)


def test_the_formatter_keeps_every_hostile_value_on_one_printable_line() -> None:
    record = logging.LogRecord(
        "service.test", logging.WARNING, __file__, 1, "path %s: %r", (HOSTILE, HOSTILE), None
    )
    record.fields = {"path": HOSTILE, HOSTILE: [HOSTILE], "nested": {"value": HOSTILE}}
    correlation.set_hook_instance(HOSTILE)
    try:
        line = JsonFormatter().format(record)
    finally:
        correlation.clear()
    assert len(line.splitlines()) == 1 and _printable_line(line)
    decoded = json.loads(line)
    assert decoded["message"] == f"path {HOSTILE}: {HOSTILE!r}"
    assert decoded["path"] == HOSTILE and decoded[HOSTILE] == [HOSTILE]
    assert decoded["nested"] == {"value": HOSTILE}
    assert decoded["hookInstance"] == HOSTILE[: correlation.MAX_CHARS]


def test_structured_fields_cannot_overwrite_the_record_s_own() -> None:
    record = logging.LogRecord("service.test", logging.INFO, __file__, 1, "real", (), None)
    setattr(record, FIELDS, {"level": "CRITICAL", "message": "forged", "time": "0"})
    decoded = json.loads(JsonFormatter().format(record))
    assert (decoded["level"], decoded["message"]) == ("INFO", "real")
    assert decoded["field.level"] == "CRITICAL" and decoded["field.message"] == "forged"


def test_an_exception_is_logged_as_its_type_and_frames_never_its_message() -> None:
    message = "PHI-" + "in-the-message " + HOSTILE
    try:
        raise ValueError(message)
    except ValueError:
        record = logging.LogRecord(
            "service.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert _printable_line(line) and "PHI-in-the-message" not in line
    assert json.loads(line)["exception"]["type"] == "ValueError"


# -- real gunicorn -------------------------------------------------------------------------------

PUBLIC = "https://cds.example.org/cds/epidural"


@pytest.fixture(scope="module")
def production(
    tmp_path_factory: pytest.TempPathFactory, ec_signer: Signer
) -> Iterator[serve.Served]:
    tmp = tmp_path_factory.mktemp("forging")
    issuers = write_issuers(
        tmp / "issuers.yaml", [{"iss": ISS_ES, "jwks": {"keys": [ec_signer.public_jwk()]}}]
    )
    env = {
        "EPIDURAL_CDS_PROFILE": "production",
        "EPIDURAL_CDS_ISSUERS_FILE": str(issuers),
        "EPIDURAL_CDS_PUBLIC_BASE_URL": PUBLIC,
        "EPIDURAL_CDS_DATA_DIR": str(tmp / "data"),
        "EPIDURAL_CDS_LOG_LEVEL": "DEBUG",
        "EPIDURAL_CDS_AUDIT_STORE": "true",
    }
    served = serve.start(tmp / "serve.log", env, workers=1)
    try:
        yield served
    finally:
        served.stop()


def _raw(served: serve.Served, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


ENCODED = "%0A%0D%0B%0C%1C%1D%1E%C2%85%E2%80%A8%00%1B%7F" + "%0A%7B%22level%22%3A%22CRITICAL%22%7D"


@pytest.mark.integration
def test_hostile_input_never_starts_a_log_record(
    production: serve.Served, ec_signer: Signer
) -> None:
    aud = f"{PUBLIC}/cds-services/{SERVICE_ID}"
    hook = f"/cds-services/{SERVICE_ID}"
    with serve.session() as http:
        # the path, with and without a known prefix, and an unknown service id (audited, 404)
        for path in (f"/{ENCODED}", f"/cds/epidural/{ENCODED}", f"/cds-services/{ENCODED}"):
            url = f"{production.base}{path}?q={ENCODED}"
            assert http.post(url, json={}, timeout=20).status_code == 404
        # hookInstance of an authenticated call, and hostile headers
        body = s1_hook_body()
        body["hookInstance"] = HOSTILE
        headers = {
            "Authorization": f"Bearer {mint(ec_signer, ISS_ES, aud=aud)}",
            "User-Agent": "agent\x1b[2J\x0b\x0c",
            "Referer": "https://ehr/\x7f\x1b",
            "X-Forwarded-For": "1.2.3.4\x0b",
        }
        ok = http.post(f"{production.base}{hook}", json=body, headers=headers, timeout=30)
        assert ok.status_code == 200, ok.text
        # a signed token whose aud carries the forgery, and an unknown issuer that does
        forged_aud = mint(ec_signer, ISS_ES, aud=HOSTILE)
        forged_iss = mint(ec_signer, HOSTILE, aud=aud)
        for token in (forged_aud, forged_iss, "x\x1b\x0b\x0c\x85.x.y"):
            refused = http.post(
                f"{production.base}{hook}",
                json=s1_hook_body(),
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert refused.status_code == 401
    # a request line and a header gunicorn itself must refuse (its error log at DEBUG)
    _raw(production, b"GET /\x1b[31m\x0bx HTTP/1.1\r\nHost: a\r\n\r\n")
    _raw(production, b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\x85\r\n\r\n")

    assert production.stop() == 0  # every line written and complete before it is read
    output = production.output
    records = production.records()  # every line is one JSON object, or this fails
    assert all(_printable_line(line) for line in output.split("\n"))
    assert len(output.splitlines()) == len(records)  # no other splitter finds more lines
    assert not any(r.get("message") == "forged" for r in records)

    access_paths = [r["path"] for r in records if r["logger"] == "gunicorn.access"]
    assert any("\n" in path and '"CRITICAL"' in path for path in access_paths)  # kept, encoded
    calls = [r for r in records if r.get("message") == "hook call answered"]
    assert calls[-1]["hookInstance"] == HOSTILE[: len(calls[-1]["hookInstance"])]
    audits = [r["record"] for r in records if r["logger"] == "epidural_cds.audit"]
    assert {a["status"] for a in audits} >= {200, 401, 404}
    assert any(a["service"].startswith("\n") or "\n" in a["service"] for a in audits)
    refusals = [r for r in records if r.get("reason") == "wrong_audience"]
    assert refusals and refusals[-1]["receivedAudience"] == HOSTILE
    assert f"q={ENCODED}" not in output  # the query string is never logged
