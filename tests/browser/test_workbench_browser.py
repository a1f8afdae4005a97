"""The card workbench in a real browser: Debian's Chromium driven by Playwright.

The page is served by the real app over a real socket (tests/browser/conftest.py). Every test
uses a fresh browser context, saves a screenshot under the artifact directory and checks that it
is not blank. The page's Content-Security-Policy forbids ``eval``, so the tests wait on DOM state
(``body[data-…]`` attributes the script sets) rather than on JavaScript predicates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service.outcomes.tables import card_feedback
from tests.browser.conftest import LiveApp, LiveProduction
from tests.protocol.conftest import service_state
from tests.support.browser import BrowserPage, artifact_dir, browser_page, screenshot_is_not_blank
from tests.support.fhir_server import SekmetServer
from tests.support.workbench_auth import token

ROOT = Path(__file__).resolve().parents[2]
S1 = "s1-labour-epidural-lmwh-weakness"
NO_EPIDURAL = "no-epidural-knee-pain"
TIMEOUT_MS = 30_000


def shot(bp: BrowserPage, name: str) -> Path:
    """A full-page screenshot as a test artifact, checked for content."""
    path = artifact_dir("workbench") / f"{name}.png"
    bp.page.screenshot(path=str(path), full_page=True)
    assert screenshot_is_not_blank(path), f"{path} is blank"
    return path


def open_workbench(bp: BrowserPage, live: LiveApp) -> Any:
    page = bp.page
    page.goto(live.workbench)
    page.wait_for_selector("body[data-ready=true]", timeout=TIMEOUT_MS)
    return page


def run_example(bp: BrowserPage, live: LiveApp, example: str) -> Any:
    page = open_workbench(bp, live)
    page.select_option("#example-select", example)
    page.wait_for_selector(f"body[data-example='{example}']", timeout=TIMEOUT_MS)
    page.click("#evaluate")
    page.wait_for_selector("body[data-evaluated]", timeout=TIMEOUT_MS)
    return page


@pytest.fixture
def bp() -> Iterator[BrowserPage]:
    with browser_page() as page:
        yield page


def test_s1_shows_the_critical_card_with_mri_and_the_removal_to_dose_interval(
    bp: BrowserPage, live_app: LiveApp
) -> None:
    page = run_example(bp, live_app, S1)
    assert page.get_attribute("body", "data-evaluated") == "true"
    cards = page.locator("#cards article.card")
    assert cards.count() == 1
    card = cards.first
    assert card.get_attribute("data-indicator") == "critical"
    assert "Possible spinal epidural hematoma" in card.locator("h3.summary").inner_text()
    labels = card.locator("button.suggestion").all_inner_texts()
    assert any("MRI" in label for label in labels), labels
    # Detail markdown became elements, not markup: bold headings, lists, code spans, https links.
    assert card.locator(".detail strong").count() > 3
    assert card.locator(".detail li").count() > 3
    # Clinician text carries no raw FHIR ids (issue 13): they are in the card's evidence
    # extension, and the timeline below names each resource on hover.
    assert "Condition/" not in card.locator(".detail").inner_text()
    links = card.locator(".detail a")
    hrefs = [links.nth(i).get_attribute("href") or "" for i in range(links.count())]
    assert all(h.startswith(("https://", "http://127.0.0.1")) for h in hrefs)
    assert card.locator("select[aria-label='Override reason'] option").count() == 5
    assert "Source: ASRA guidelines" in card.locator(".source").inner_text()
    # The timeline: the removal-to-dose interval against ASRA's, and hover names the resource.
    svg = page.locator("#timeline svg.timeline-svg")
    assert svg.count() == 1
    interval = svg.locator("g[data-kind=asra]")
    assert interval.get_attribute("data-resource") == (
        "MedicationAdministration/s1-medadmin-enoxaparin"
    )
    assert interval.get_attribute("data-conflict") == "true"
    assert interval.locator("text").text_content() == "removal → dose 1.5 h (ASRA ≥ 4 h)"
    dose = svg.locator("g[data-kind=dose]")
    assert "MedicationAdministration/s1-medadmin-enoxaparin" in (
        dose.locator("title").text_content() or ""
    )
    weakness = svg.locator("g[data-resource='Condition/s1-cond-leg-weakness-bilateral']")
    assert weakness.locator("text").first.text_content() == "B"
    assert "(bilateral)" in (weakness.locator("title").text_content() or "")
    for kind in ("puncture", "removal", "block_end", "temperature", "lab", "fired", "now"):
        assert svg.locator(f"g[data-kind={kind}]").count() >= 1, kind
    weakness.hover()
    # Why: the motor red flag fired on card 1, the abscess rule did not, with its conditions.
    motor = page.locator("#why .rule[data-pattern=hematoma_motor]")
    assert "fired (critical) → card 1 (critical)" in motor.inner_text()
    abscess = page.locator("#why .rule[data-pattern=abscess]")
    assert abscess.get_attribute("data-fired") == "false"
    assert "Fever or raised infection markers" in abscess.inner_text()
    # Raw JSON, copyable.
    raw = json.loads(page.locator("#raw-request").inner_text())
    assert raw["hook"] == "patient-view" and set(raw["prefetch"]) >= {"procedures", "conditions"}
    response = json.loads(page.locator("#raw-response").inner_text())
    assert response["cards"][0]["indicator"] == "critical"
    page.click("button[data-copy=raw-response]")
    # The copy handler is asynchronous (the clipboard API): wait for the button to say so.
    page.wait_for_selector(
        "button[data-copy=raw-response]:text-matches('^(Copied|Selected: press Ctrl\\+C)$')",
        timeout=TIMEOUT_MS,
    )
    assert not bp.console_errors
    requested = {re.sub(r"\?.*", "", url) for url in bp.requests}
    assert all(url.startswith(live_app.base_url) or url.startswith("data:") for url in requested)
    shot(bp, "s1-1280x800")
    for section in ("timeline", "why", "cards"):
        part = artifact_dir("workbench") / f"s1-{section}.png"
        page.locator(f"section.{section}").screenshot(path=str(part))
        assert screenshot_is_not_blank(part)


def test_no_epidural_patient_shows_no_card_and_says_so(bp: BrowserPage, live_app: LiveApp) -> None:
    page = run_example(bp, live_app, NO_EPIDURAL)
    assert page.locator("#cards article.card").count() == 0
    message = page.locator("#no-cards").inner_text()
    assert message.startswith("No card")
    assert "No epidural or other neuraxial procedure" in message
    assert "No epidural" in page.locator("#why-summary").inner_text()
    assert (
        "not an index procedure: its code and text name no epidural"
        in page.locator("#why").inner_text()
    )
    assert "No epidural episode to draw" in page.locator("#timeline").inner_text()
    shot(bp, "no-epidural")


def test_why_panel_lists_every_rule_with_its_conditions(bp: BrowserPage, live_app: LiveApp) -> None:
    # S6c: retention and saddle numbness 45 days after a caudal ESI, outside every window of
    # the epidural, so R-04 fires (in the whole-record section), and every rule R-01..R-11 is
    # listed with its conditions, the near misses included.
    page = run_example(bp, live_app, "s6c-esi-45-days-retention-saddle")
    assert page.get_attribute("body", "data-evaluated") == "true", page.inner_text("#status")
    rules = {rule.get_attribute("data-rule") for rule in page.locator("#why .rule").all()}
    assert rules == {f"R-{n:02d}" for n in range(1, 12)}
    r04 = page.locator("#why-record .rule[data-pattern=unattributed_red_flags]")
    assert r04.get_attribute("data-fired") == "true"
    text = r04.inner_text()
    assert "fired (critical) → card 1 (critical)" in text
    assert "✓ Red flags recorded in the last 7 d" in text
    assert "Condition/s6c-cond-urinary-retention: Urinary retention" in text
    assert "explained by Procedure/s6c-proc-caudal-esi no" in text
    # A near miss in the episode's own section: the same retention, too late for R-06.
    r06 = page.locator(".episode:not(.record) .rule[data-pattern=isolated_retention]")
    assert r06.get_attribute("data-fired") == "false"
    assert "✗ New urinary retention from the puncture to 24 h after" in r06.inner_text()
    assert "beforeLimit no" in r06.inner_text()
    # Alternatives are grouped: any one of R-01's cauda equina signs would do.
    cauda = page.locator(".rule[data-pattern=cauda_equina] .alternatives")
    assert cauda.locator(".alternatives-heading").inner_text() == "Any one of:"
    assert cauda.locator(".condition.one-of").count() == 4
    assert not bp.console_errors
    part = artifact_dir("workbench") / "why-every-rule.png"
    page.locator("section.why").screenshot(path=str(part))
    assert screenshot_is_not_blank(part)


def _without_ids(tree: Any) -> Any:
    """Cards without per-call uuids and without ``meta``: a FHIR server stamps ``meta`` on what
    it stores, and the hold suggestion carries the whole order as the server returned it."""
    if isinstance(tree, dict):
        return {k: _without_ids(v) for k, v in tree.items() if k not in ("uuid", "meta")}
    if isinstance(tree, list):
        return [_without_ids(v) for v in tree]
    return tree


@pytest.mark.integration
def test_fhir_server_mode_gives_the_same_cards_as_prefetch_mode(
    bp: BrowserPage, live_app: LiveApp
) -> None:
    bundle = json.loads((ROOT / "fhir_examples" / S1 / "bundle.json").read_text())
    with SekmetServer() as fhir:
        fhir.load(bundle)
        page = run_example(bp, live_app, S1)
        from_prefetch = json.loads(page.locator("#raw-response").inner_text())
        assert from_prefetch["cards"][0]["indicator"] == "critical"
        page.click("#mode-fhir")
        page.fill("#fhir-base", fhir.base_url)
        page.click("#evaluate")
        page.wait_for_selector("body[data-evaluated]", timeout=TIMEOUT_MS)
        assert page.get_attribute("body", "data-evaluated") == "true", page.inner_text("#status")
        from_server = json.loads(page.locator("#raw-response").inner_text())
        request = json.loads(page.locator("#raw-request").inner_text())
        shot(bp, "fhir-server-mode")
    assert _without_ids(from_server) == _without_ids(from_prefetch)
    # The browser, acting as the EHR, ran our templates against the FHIR server itself.
    assert request["fhirServer"] == fhir.base_url and "fhirAuthorization" not in request
    assert request["context"]["patientId"] == "s1-patient"
    fetched = [u for u in bp.requests if u.startswith(fhir.base_url)]
    assert any("/Procedure?patient=s1-patient" in u for u in fetched), fetched
    assert any(u.endswith("/Patient/s1-patient") for u in fetched), fetched
    discovery = [u for u in bp.requests if u.endswith("/workbench/api/discovery")]
    assert discovery, "the templates come from discovery"
    assert set(request["prefetch"]) == {
        "patient",
        "procedures",
        "conditions",
        "observations",
        "exam-observations",
        "medication-requests",
        "medication-administrations",
        "service-requests",
        "imaging-studies",
        "diagnostic-reports",
    }


def test_malformed_bundle_shows_each_problem(bp: BrowserPage, live_app: LiveApp) -> None:
    bundle = json.loads((ROOT / "fhir_examples" / S1 / "bundle.json").read_text())
    bundle["entry"][7]["resource"]["onsetDateTime"] = "yesterday evening"
    bundle["entry"].append({"resource": {"resourceType": "Nonsense", "id": "x"}})
    page = open_workbench(bp, live_app)
    page.click("#mode-bundle")
    page.fill("#bundle-text", json.dumps(bundle))
    page.click("#evaluate")
    page.wait_for_selector("body[data-evaluated=error]", timeout=TIMEOUT_MS)
    problems = page.locator("#problems li.problem").all_inner_texts()
    assert any(
        "Condition/s1-cond-leg-weakness-bilateral" in p
        and "Bundle.entry[7].resource.onsetDateTime" in p
        for p in problems
    ), problems
    assert any("Nonsense/x" in p for p in problems), problems
    assert "problem(s); nothing was evaluated" in page.locator("#status").inner_text()
    assert page.locator("#cards article.card").count() == 0
    shot(bp, "malformed-bundle")
    # Not JSON at all: said in the page, no request made.
    page.fill("#bundle-text", "{ not json")
    page.click("#evaluate")
    page.wait_for_selector("body[data-evaluated=error]", timeout=TIMEOUT_MS)
    assert "not JSON" in page.locator("#status").inner_text()


def test_record_text_never_becomes_markup(
    bp: BrowserPage, live_app: LiveApp, tmp_path: Path
) -> None:
    bundle = json.loads((ROOT / "fhir_examples" / S1 / "bundle.json").read_text())
    payload = '<img src=x id=pwned onerror="document.title=1"> [click](javascript:alert(1))'
    for entry in bundle["entry"]:
        if entry["resource"]["id"] == "s1-cond-leg-weakness-bilateral":
            entry["resource"]["code"]["text"] = f"Weakness of both legs {payload}"
    upload = tmp_path / "patient.json"
    upload.write_text(json.dumps(bundle))
    page = open_workbench(bp, live_app)
    page.click("#mode-bundle")
    page.set_input_files("#bundle-file", str(upload))  # the upload path of Bundle mode
    page.wait_for_selector("body[data-bundle-file='patient.json']", timeout=TIMEOUT_MS)
    page.fill("#now", "2026-03-10T20:00:00+00:00")
    page.click("#evaluate")
    page.wait_for_selector("body[data-evaluated=true]", timeout=TIMEOUT_MS)
    assert page.locator("img").count() == 0
    assert page.locator("a[href^=javascript]").count() == 0
    assert "<img src=x" in page.locator("#cards .detail").inner_text()
    assert page.title().startswith("Epidural CDS")


def test_accepting_a_suggestion_and_overriding_send_feedback(
    bp: BrowserPage, live_app: LiveApp
) -> None:
    # The page's requests go to the service's real feedback endpoint (issue 15); page.route
    # only records each body on the way and lets it through, so the "HTTP 200" the page shows
    # is the endpoint's own answer.
    sent: list[dict[str, Any]] = []

    def feedback(route: Any) -> None:
        sent.append({"url": route.request.url, "body": json.loads(route.request.post_data)})
        route.continue_()

    bp.page.route("**/cds-services/*/feedback", feedback)
    page = run_example(bp, live_app, S1)
    response = json.loads(page.locator("#raw-response").inner_text())
    card = response["cards"][0]
    mri = next(s for s in card["suggestions"] if "MRI" in s["label"])
    page.locator(f"button.suggestion[data-uuid='{mri['uuid']}']").click()
    page.wait_for_selector(".feedback-status:has-text('HTTP 200')", timeout=TIMEOUT_MS)
    assert page.locator(f"button.suggestion[data-uuid='{mri['uuid']}']").is_disabled()
    page.select_option("select[aria-label='Override reason']", index=1)
    page.fill("input[aria-label='Override comment']", "MRI booked for 21:00")
    page.click("button.override")
    page.wait_for_selector(".feedback-status:has-text('overridden')", timeout=TIMEOUT_MS)
    assert [s["url"] for s in sent] == [
        f"{live_app.base_url}/cds-services/epidural-complications/feedback"
    ] * 2
    accepted, overridden = (s["body"]["feedback"] for s in sent)
    stamp = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
    assert accepted == [
        {
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": mri["uuid"]}],
            "card": card["uuid"],
            "outcomeTimestamp": accepted[0]["outcomeTimestamp"],
        }
    ]
    assert stamp.match(accepted[0]["outcomeTimestamp"])
    reason = card["overrideReasons"][1]
    assert overridden == [
        {
            "outcome": "overridden",
            "overrideReason": {"reason": reason, "userComment": "MRI booked for 21:00"},
            "card": card["uuid"],
            "outcomeTimestamp": overridden[0]["outcomeTimestamp"],
        }
    ]
    shot(bp, "feedback-sent")


def test_production_workbench_feedback_is_stored_with_the_session_token(
    bp: BrowserPage, live_production: LiveProduction
) -> None:
    # Authentication on (production profile, workbench enabled): the user pastes a workbench
    # token under "Bearer token", as docs/workbench.md says, and the page does everything else
    # with it, feedback included, which goes to the workbench's own route and into the store.
    live = live_production.live
    sent: list[str] = []
    bp.page.on("request", lambda r: sent.append(r.url) if "feedback" in r.url else None)
    page = open_workbench(bp, live)
    assert page.locator("#token-box").get_attribute("open") is not None
    assert "Authentication is on" in page.locator("#notice").inner_text()
    assert "Give a bearer token" in page.locator("#example-select").inner_text()
    page.fill("#token", token(live_production.signer))
    page.press("#token", "Tab")  # leaving the field: the page lists the examples with the token
    page.wait_for_selector(f"#example-select option[value='{S1}']", state="attached")
    page.select_option("#example-select", S1)
    page.wait_for_selector(f"body[data-example='{S1}']", timeout=TIMEOUT_MS)
    page.click("#evaluate")
    page.wait_for_selector("body[data-evaluated]", timeout=TIMEOUT_MS)
    assert page.get_attribute("body", "data-evaluated") == "true", page.inner_text("#status")
    card = json.loads(page.locator("#raw-response").inner_text())["cards"][0]
    mri = next(s for s in card["suggestions"] if "MRI" in s["label"])
    page.locator(f"button.suggestion[data-uuid='{mri['uuid']}']").click()
    page.wait_for_selector(".feedback-status:has-text('HTTP')", timeout=TIMEOUT_MS)
    assert page.locator(".feedback-status").inner_text() == "Feedback accepted: HTTP 200"
    assert sent == [f"{live.base_url}/workbench/api/feedback/epidural-complications"]
    engine = service_state(live.app).handler.outcomes.store.engine  # type: ignore[union-attr]
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(select(card_feedback))]
    assert [(r["card_uuid"], r["outcome"], r["known"], r["accepted_count"]) for r in rows] == [
        (card["uuid"], "accepted", True, 1)
    ]
    assert not bp.console_errors
    shot(bp, "production-feedback")


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (800, 900)])
def test_layout_fits_the_window(width: int, height: int, live_app: LiveApp) -> None:
    with browser_page(width, height) as narrow:
        page = run_example(narrow, live_app, S1)
        for selector in (
            "#cards article.card",
            "#timeline svg",
            "#why",
            "#evaluate",
            "#raw-request",
        ):
            box = page.locator(selector).first.bounding_box()
            assert box is not None, selector
            assert box["x"] >= 0 and box["x"] + box["width"] <= width + 1, (selector, box)
        page_width = page.locator("main").bounding_box()
        assert page_width is not None and page_width["width"] <= width
        if width < 1000:
            # One column: the cards sit below the input panel, not beside it.
            inputs = page.locator("section.input").bounding_box()
            cards = page.locator("section.cards").bounding_box()
            assert inputs is not None and cards is not None
            assert cards["y"] >= inputs["y"] + inputs["height"]
        path = shot(narrow, f"s1-{width}px")
        assert path.stat().st_size > 10_000
