// Card workbench (docs/workbench.md). Plain browser JavaScript, no build step, no CDN.
// Safety rule: nothing from the record, the cards or any server becomes markup. Every string is
// put into the page with textContent or as an attribute value; card markdown is parsed here into
// elements (emphasis, lists, code, http(s) links only), never assigned to innerHTML.
"use strict";

const state = { mode: "example", config: null, lastRequest: null, serviceId: null };
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function headers(extra) {
  const out = Object.assign({ Accept: "application/json" }, extra || {});
  const token = $("token").value.trim();
  if (token) out.Authorization = "Bearer " + token;
  return out;
}

async function api(path, body) {
  const init = { headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body) { init.method = "POST"; init.body = JSON.stringify(body); }
  const response = await fetch(path, init);
  let document_ = null;
  try { document_ = await response.json(); } catch (_) { document_ = null; }
  return { status: response.status, ok: response.ok, body: document_ };
}

function outcomeText(body) {
  if (body && Array.isArray(body.issue)) {
    return body.issue.map((i) => i.diagnostics || i.code || "error").join("; ");
  }
  return "no details";
}

// ---- safe markdown: the CommonMark subset our cards use ----------------------------------

function safeUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch (_) {
    return null;
  }
}

// CommonMark backslash escapes (the service escapes record text with them) are set aside as
// private-use characters before tokenising, so "\*" never opens emphasis; text nodes get the
// character back, and the character references the service writes (&lt; &gt; &amp; &quot;)
// are decoded into text, never parsed as markup.
const ESCAPED_BASE = 0xe000;
const ENTITIES = { lt: "<", gt: ">", amp: "&", quot: '"', "#39": "'" };

function protect(text) {
  return text.replace(/\\([!-\/:-@\[-`{-~])/g, (_, c) => String.fromCharCode(ESCAPED_BASE + c.charCodeAt(0)));
}

function plain(text) {
  return text
    .replace(/[\ue000-\ue07f]/g, (ch) => String.fromCharCode(ch.charCodeAt(0) - ESCAPED_BASE))
    .replace(/&(lt|gt|amp|quot|#39);/g, (_, name) => ENTITIES[name]);
}

function literal(text) {
  // Inside a code span CommonMark keeps backslashes and references as written.
  return text.replace(/[\ue000-\ue07f]/g, (ch) => "\\" + String.fromCharCode(ch.charCodeAt(0) - ESCAPED_BASE));
}

function inline(raw) {
  // Tokens: `code`, **strong**, *em* / _em_, [label](http-url). Anything else is plain text.
  const out = document.createDocumentFragment();
  const pattern = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*)|(\b_[^_]+_\b)|(\[[^\]]+\]\([^)\s]+\))/;
  let rest = protect(raw);
  while (rest.length) {
    const match = pattern.exec(rest);
    if (!match) { out.append(document.createTextNode(plain(rest))); break; }
    if (match.index) out.append(document.createTextNode(plain(rest.slice(0, match.index))));
    const token = match[0];
    if (match[1]) out.append(el("code", {}, literal(token.slice(1, -1))));
    else if (match[2]) { const s = el("strong"); s.append(inline(token.slice(2, -2))); out.append(s); }
    else if (match[3] || match[4]) { const e = el("em"); e.append(inline(token.slice(1, -1))); out.append(e); }
    else {
      const close = token.indexOf("](");
      const label = plain(token.slice(1, close));
      const href = safeUrl(plain(token.slice(close + 2, -1)));
      if (href) out.append(el("a", { href, target: "_blank", rel: "noopener noreferrer" }, label));
      else out.append(document.createTextNode(label));
    }
    rest = rest.slice(match.index + token.length);
  }
  return out;
}

function markdown(text) {
  const out = document.createDocumentFragment();
  let list = null;
  let para = null;
  for (const raw of String(text || "").split("\n")) {
    const line = raw.trimEnd();
    const item = /^\s*[-*]\s+(.*)$/.exec(line);
    if (!line.trim()) { list = null; para = null; continue; }
    if (item) {
      para = null;
      if (!list) { list = el("ul"); out.append(list); }
      const li = el("li"); li.append(inline(item[1])); list.append(li);
      continue;
    }
    list = null;
    if (!para) { para = el("p"); out.append(para); } else para.append(" ");
    para.append(inline(line));
  }
  return out;
}

// ---- feedback (CDS Hooks 2.0 §Feedback) -----------------------------------------------

// Where feedback goes comes from /workbench/api/config: the CDS Hooks feedback endpoint when no
// token is needed, else the workbench's own route, which takes the session token the API calls
// carry (the CDS Hooks endpoint wants a fresh token for its own URL on every call).
function feedbackUrl() {
  const configured = state.config && state.config.feedbackUrl;
  const path = configured || "../cds-services/" + encodeURIComponent(state.serviceId) + "/feedback";
  return new URL(path, document.baseURI);
}

async function sendFeedback(card, item, statusNode) {
  const url = feedbackUrl();
  item.card = card.uuid;
  item.outcomeTimestamp = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  try {
    const response = await fetch(url.href, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ feedback: [item] }),
    });
    statusNode.classList.toggle("error", !response.ok);
    statusNode.textContent = "Feedback " + item.outcome + ": HTTP " + response.status;
  } catch (error) {
    statusNode.classList.add("error");
    statusNode.textContent = "Feedback could not be sent: " + error.message;
  }
}

// ---- cards ---------------------------------------------------------------------------

function renderCard(card, index) {
  const indicator = ["critical", "warning", "info"].includes(card.indicator) ? card.indicator : "info";
  const node = el("article", { class: "card " + indicator, "data-indicator": indicator, "data-index": index });
  node.append(el("span", { class: "indicator" }, indicator));
  node.append(el("h3", { class: "summary" }, String(card.summary || "")));
  const detail = el("div", { class: "detail" });
  detail.append(markdown(card.detail));
  node.append(detail);
  const source = card.source || {};
  const sourceLine = el("p", { class: "source" }, "Source: ");
  const sourceUrl = source.url ? safeUrl(source.url) : null;
  sourceLine.append(sourceUrl ? el("a", { href: sourceUrl, target: "_blank", rel: "noopener noreferrer" }, String(source.label || "")) : String(source.label || ""));
  if (source.topic && source.topic.display) sourceLine.append(" · topic: " + source.topic.display);
  node.append(sourceLine);
  for (const link of card.links || []) {
    const href = safeUrl(link.url);
    if (href && link.type === "absolute") node.append(el("p", {}, el("a", { href, target: "_blank", rel: "noopener noreferrer" }, String(link.label || href))));
  }
  const feedbackStatus = el("p", { class: "feedback-status", role: "status" });
  if (card.suggestions && card.suggestions.length) {
    const box = el("div", { class: "suggestions" });
    for (const suggestion of card.suggestions) {
      const button = el("button", { type: "button", class: "suggestion" + (suggestion.isRecommended ? " recommended" : ""), "data-uuid": suggestion.uuid }, "Accept: " + String(suggestion.label || ""));
      button.addEventListener("click", () => {
        button.disabled = true;
        sendFeedback(card, { outcome: "accepted", acceptedSuggestions: [{ id: suggestion.uuid }] }, feedbackStatus);
      });
      box.append(button);
    }
    node.append(box);
  }
  if (card.overrideReasons && card.overrideReasons.length) {
    const box = el("div", { class: "overrides" });
    const select = el("select", { "aria-label": "Override reason" });
    card.overrideReasons.forEach((reason, i) => select.append(el("option", { value: i }, String(reason.display || reason.code))));
    const comment = el("input", { type: "text", placeholder: "comment (optional)", "aria-label": "Override comment" });
    const button = el("button", { type: "button", class: "override" }, "Override");
    button.addEventListener("click", () => {
      const reason = card.overrideReasons[Number(select.value)];
      const overrideReason = { reason: { code: reason.code, system: reason.system, display: reason.display } };
      if (comment.value.trim()) overrideReason.userComment = comment.value.trim();
      sendFeedback(card, { outcome: "overridden", overrideReason }, feedbackStatus);
    });
    box.append(select, comment, button);
    node.append(box);
  }
  node.append(feedbackStatus);
  return node;
}

function renderCards(cards, explanation) {
  const box = $("cards");
  box.replaceChildren();
  if (!cards.length) {
    const why = explanation && explanation.summary ? " " + explanation.summary : "";
    box.append(el("p", { class: "no-cards", id: "no-cards" }, "No card: none of the service's rules matched this record at this time. No card does not mean no risk." + why));
    return;
  }
  cards.forEach((card, i) => box.append(renderCard(card, i)));
}

// ---- timeline ------------------------------------------------------------------------

const LANES = ["procedure", "findings", "drugs", "labs", "rules"];
const LANE_NAMES = { procedure: "Procedure", findings: "Findings", drugs: "Anticoagulants", labs: "Labs / temp.", rules: "Rules" };
const COLOURS = { puncture: "#17324d", removal: "#17324d", last_la: "#5b6575", block_end: "#7a4fb0", finding: "#b26a00", dose: "#b3261e", lab: "#1f5fa8", temperature: "#c2185b", fired: "#b3261e", now: "#1b7a3a" };

function utc(iso) {
  return new Date(iso).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

function renderTimeline(timelines) {
  const box = $("timeline");
  box.replaceChildren();
  if (!timelines.length) { box.append(el("p", { class: "hint" }, "No epidural episode to draw.")); return; }
  for (const t of timelines) {
    box.append(el("h3", {}, t.label + " — " + t.episode));
    box.append(drawEpisode(t));
  }
  box.append(el("p", { class: "legend" }, "Hover a mark to see its resource. Findings show L, R, B (both) or ? for the side. Red bars: the time from the puncture or removal to a dose; pale bars: the interval ASRA asks for."));
}

function drawEpisode(t) {
  const width = 960, left = 110, right = 20, laneHeight = 56, top = 26;
  const height = top + LANES.length * laneHeight + 24;
  const start = Date.parse(t.start), end = Math.max(Date.parse(t.end), start + 3600e3);
  const pad = (end - start) * 0.04;
  const x0 = start - pad, x1 = end + pad;
  const x = (iso) => left + ((Date.parse(iso) - x0) / (x1 - x0)) * (width - left - right);
  const laneY = (lane) => top + LANES.indexOf(lane) * laneHeight + laneHeight / 2;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "timeline-svg", role: "img", "aria-label": "Timeline of " + t.episode, "data-episode": t.episode });
  LANES.forEach((lane) => {
    const y = laneY(lane);
    root.append(svg("line", { x1: left, x2: width - right, y1: y, y2: y, stroke: "#e1e5eb" }));
    root.append(svg("text", { x: 6, y: y + 4, class: "lane-label" }, LANE_NAMES[lane]));
  });
  // Day ticks.
  const day = 86400e3;
  for (let d = Math.ceil(x0 / day) * day; d <= x1; d += day) {
    const px = x(new Date(d).toISOString());
    root.append(svg("line", { x1: px, x2: px, y1: top - 6, y2: height - 20, stroke: "#eef0f3" }));
    root.append(svg("text", { x: px + 2, y: top - 10, class: "lane-label" }, new Date(d).toISOString().slice(0, 10)));
  }
  for (const span of t.spans) {
    const g = svg("g", { class: "mark span", "data-kind": span.kind, "data-resource": span.resource });
    g.append(svg("title", {}, span.resource + " — " + span.label + ": " + utc(span.from) + " to " + utc(span.to)));
    g.append(svg("rect", { x: x(span.from), y: laneY("procedure") - 7, width: Math.max(2, x(span.to) - x(span.from)), height: 14, fill: "#cfe0f3", rx: 3 }));
    root.append(g);
  }
  t.intervals.forEach((interval, i) => {
    const y = laneY("drugs") - 16 + (i % 3) * 10;
    const g = svg("g", { class: "mark interval", "data-kind": "asra", "data-resource": interval.resource, "data-conflict": String(interval.conflict) });
    g.append(svg("title", {}, interval.resource + " — " + interval.label));
    g.append(svg("rect", { x: x(interval.from), y: y - 5, width: Math.max(2, x(interval.requiredTo) - x(interval.from)), height: 10, fill: "#f3d6d4", rx: 2 }));
    g.append(svg("line", { x1: x(interval.from), x2: x(interval.to), y1: y, y2: y, stroke: interval.conflict ? "#b3261e" : "#5b6575", "stroke-width": 3 }));
    const end = Math.max(x(interval.to), x(interval.requiredTo));
    const flip = end > width * 0.7;
    g.append(svg("text", { x: flip ? x(interval.from) - 4 : end + 4, y: y + 4, class: "interval-label", "text-anchor": flip ? "end" : "start" }, interval.short));
    root.append(g);
  });
  const rows = {};
  for (const mark of t.marks) {
    const row = rows[mark.lane] = ((rows[mark.lane] ?? -1) + 1) % 3;
    const px = x(mark.at);
    const y = laneY(mark.lane) + (mark.lane === "drugs" ? 14 : (row - 1) * 14);
    const g = svg("g", { class: "mark", "data-kind": mark.kind, "data-resource": mark.resource });
    g.append(svg("title", {}, (mark.resource ? mark.resource + " — " : "") + mark.label + ", " + utc(mark.at)));
    const colour = COLOURS[mark.kind] || "#444";
    if (mark.kind === "block_end" || mark.kind === "now" || mark.kind === "fired") {
      g.append(svg("line", { x1: px, x2: px, y1: top, y2: height - 20, stroke: colour, "stroke-dasharray": mark.kind === "fired" ? "2 2" : "5 3" }));
    }
    if (mark.kind === "finding") {
      g.append(svg("circle", { cx: px, cy: y, r: 7, fill: colour }));
      const side = { left: "L", right: "R", bilateral: "B" }[mark.laterality] || "?";
      g.append(svg("text", { x: px - 3.5, y: y + 4, fill: "#fff", class: "side" }, side));
    } else if (mark.kind === "dose") {
      g.append(svg("rect", { x: px - 5, y: y - 5, width: 10, height: 10, fill: colour, transform: `rotate(45 ${px} ${y})` }));
    } else {
      g.append(svg("circle", { cx: px, cy: y, r: 5, fill: colour }));
    }
    const short = mark.label.length > 38 ? mark.label.slice(0, 36) + "…" : mark.label;
    const flip = px > width * 0.7;
    g.append(svg("text", { x: flip ? px - 9 : px + 9, y: y + 4, "text-anchor": flip ? "end" : "start" }, short));
    root.append(g);
  }
  return root;
}

// ---- why -----------------------------------------------------------------------------

function renderCondition(condition) {
  const row = el("div", { class: "condition" + (condition.oneOf ? " one-of" : "") });
  row.append(el("span", { class: condition.met ? "met" : "unmet" }, condition.met ? "✓ " : "✗ "), condition.text);
  if (condition.note) row.append(" — " + condition.note);
  if (condition.found.length) {
    const list = el("ul");
    for (const found of condition.found) {
      const checks = Object.entries(found.checks || {}).map(([k, v]) => k + " " + (v ? "yes" : "no")).join(", ");
      list.append(el("li", {}, found.resource + ": " + found.text + (checks ? " [" + checks + "]" : "")));
    }
    row.append(list);
  } else if (!condition.met && !condition.note) {
    row.append(" (nothing found)");
  }
  return row;
}

// Required conditions are listed as they come; a rule's alternatives ("oneOf") are grouped in
// one box at the place of the first, under "Any one of:".
function renderEntries(section, entries) {
  const stated = new Set();
  for (const entry of entries) {
    const rule = el("div", { class: "rule" + (entry.fired ? " fired" : ""), "data-pattern": entry.pattern, "data-rule": entry.rule, "data-fired": String(entry.fired) });
    const verdict = entry.fired ? "fired (" + entry.indicator + ") → " + entry.shown : "did not fire";
    rule.append(el("div", {}, el("span", { class: "verdict" }, entry.rule + " " + entry.title + ": " + verdict), " ", el("span", { class: "pattern" }, entry.pattern)));
    if (entry.statement && !stated.has(entry.statement)) rule.append(el("div", { class: "statement" }, entry.statement));
    stated.add(entry.statement);
    let alternatives = null;
    for (const condition of entry.conditions) {
      if (condition.oneOf && !alternatives) {
        alternatives = el("div", { class: "alternatives" }, el("div", { class: "alternatives-heading" }, "Any one of:"));
        rule.append(alternatives);
      }
      (condition.oneOf ? alternatives : rule).append(renderCondition(condition));
    }
    section.append(rule);
  }
}

function renderWhy(explanation) {
  const box = $("why");
  box.replaceChildren();
  box.append(el("p", { id: "why-summary" }, explanation.summary || ""));
  for (const procedure of explanation.procedures || []) {
    box.append(el("p", { class: "hint" }, procedure.resource + " (" + procedure.status + "): " + procedure.text + " — not an index procedure: " + procedure.reason));
  }
  for (const episode of explanation.episodes || []) {
    const section = el("div", { class: "episode", "data-episode": episode.episode });
    section.append(el("h3", {}, episode.label + " — " + episode.episode + " (" + episode.procedureClass + ")"));
    renderEntries(section, episode.entries);
    box.append(section);
  }
  if ((explanation.record || []).length) {
    const section = el("div", { class: "episode record", id: "why-record" });
    section.append(el("h3", {}, "Across the whole record (every epidural)"));
    renderEntries(section, explanation.record);
    box.append(section);
  }
}

// ---- gathering data ---------------------------------------------------------------------

function parseBundle() {
  const text = $("bundle-text").value.trim();
  if (!text) throw new Error("paste or upload a FHIR Bundle first");
  try { return JSON.parse(text); } catch (error) { throw new Error("the Bundle is not JSON: " + error.message); }
}

function showProblems(outcome) {
  const list = $("problems");
  list.replaceChildren();
  for (const issue of (outcome && outcome.issue) || []) {
    const where = (issue.expression || []).join(", ");
    const resource = issue.details && issue.details.text ? issue.details.text : "";
    list.append(el("li", { class: "problem" }, el("strong", {}, resource), " ", el("code", {}, where), ": " + (issue.diagnostics || issue.code)));
  }
  list.hidden = !list.children.length;
}

function renderTemplate(template, context) {
  const user = context.userId || "";
  const userPart = (type) => (user.startsWith(type + "/") ? user.slice(type.length + 1) : "");
  const tokens = {
    "context.patientId": context.patientId,
    "context.userId": user,
    userPractitionerId: userPart("Practitioner"),
    userPractitionerRoleId: userPart("PractitionerRole"),
  };
  return template.replace(/\{\{\s*([\w.]+)\s*\}\}/g, (_, name) => encodeURIComponent(tokens[name] || ""));
}

async function fhirGet(url) {
  const response = await fetch(url, { headers: { Accept: "application/fhir+json" } });
  if (response.status === 404 || response.status === 410) return { missing: true };
  if (!response.ok) throw new Error("HTTP " + response.status);
  return { body: await response.json() };
}

async function prefetchFrom(base, templates, context) {
  const prefetch = {};
  for (const [key, template] of Object.entries(templates)) {
    const query = renderTemplate(template, context);
    try {
      const first = await fhirGet(base + "/" + query);
      if (first.missing) { prefetch[key] = null; continue; }
      const body = first.body;
      if (body.resourceType === "Bundle") {
        const entries = (body.entry || []).slice();
        let next = (body.link || []).find((l) => l.relation === "next");
        for (let page = 0; next && page < 10 && next.url.startsWith(base); page++) {
          const more = (await fhirGet(next.url)).body || {};
          entries.push(...(more.entry || []));
          next = (more.link || []).find((l) => l.relation === "next");
        }
        const bundle = { resourceType: "Bundle", type: "searchset", total: entries.length };
        if (entries.length) bundle.entry = entries;
        prefetch[key] = bundle;
      } else {
        prefetch[key] = body;
      }
    } catch (error) {
      // CDS Hooks 2.0: a key the client could not satisfy is left out.
      setStatus("Prefetch " + key + " failed (" + error.message + "); left out");
    }
  }
  return prefetch;
}

function uuid4() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
  const h = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

async function requestFromFhirServer() {
  const base = $("fhir-base").value.trim().replace(/\/+$/, "");
  const patientId = $("patient-id").value.trim();
  if (!safeUrl(base)) throw new Error("give the FHIR server's http(s) base URL");
  if (!patientId) throw new Error("give the patient id");
  setStatus("Reading discovery…");
  const found = await api("api/discovery");
  if (!found.ok) throw new Error("discovery failed: HTTP " + found.status);
  const service = (found.body.services || []).find((s) => s.id === state.serviceId) || found.body.services[0];
  const context = { userId: "Practitioner/workbench", patientId };
  setStatus("Running our prefetch templates against " + base + "…");
  const prefetch = await prefetchFrom(base, service.prefetch || {}, context);
  return { hook: service.hook, hookInstance: uuid4(), fhirServer: base, context, prefetch };
}

async function requestFromBundle() {
  const result = await api("api/request", { bundle: parseBundle(), patientId: $("patient-id").value.trim() });
  if (result.status === 422) {
    showProblems(result.body);
    throw new Error("the Bundle has " + result.body.issue.length + " problem(s); nothing was evaluated");
  }
  if (!result.ok) throw new Error("HTTP " + result.status + ": " + outcomeText(result.body));
  return result.body.request;
}

async function evaluate() {
  $("problems").hidden = true;
  delete document.body.dataset.evaluated;
  // A result on screen always belongs to the data last sent: clear the previous one first.
  for (const id of ["cards", "timeline", "why", "raw-request", "raw-response"]) $(id).replaceChildren();
  setStatus("Working…");
  try {
    const request = state.mode === "fhir" ? await requestFromFhirServer() : await requestFromBundle();
    state.lastRequest = request;
    $("raw-request").textContent = JSON.stringify(request, null, 2);
    setStatus("Calling the service…");
    const result = await api("api/evaluate", { request, now: $("now").value.trim() || null });
    $("raw-response").textContent = JSON.stringify(result.body, null, 2);
    if (!result.ok) throw new Error("HTTP " + result.status + ": " + outcomeText(result.body));
    const cards = result.body.response.cards;
    $("raw-response").textContent = JSON.stringify(result.body.response, null, 2);
    renderCards(cards, result.body.explanation);
    renderTimeline(result.body.timeline);
    renderWhy(result.body.explanation);
    setStatus(cards.length + " card(s) at " + utc(result.body.now));
    document.body.dataset.evaluated = "true";
  } catch (error) {
    setStatus(error.message, true);
    document.body.dataset.evaluated = "error";
  }
}

// ---- setup ----------------------------------------------------------------------------

function setMode(mode) {
  state.mode = mode;
  document.querySelectorAll(".mode").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.mode === mode)));
  document.querySelectorAll(".mode-body").forEach((d) => { d.hidden = d.dataset.for !== mode; });
}

async function chooseExample(id) {
  if (!id) return;
  const result = await api("api/examples/" + encodeURIComponent(id));
  if (!result.ok) { setStatus("Example not found", true); return; }
  $("bundle-text").value = JSON.stringify(result.body.bundle, null, 2);
  $("patient-id").value = result.body.scenario.patientId || "";
  $("now").value = result.body.scenario.now || "";
  $("example-description").textContent = result.body.scenario.description || "";
  document.body.dataset.example = id;
}

async function loadExamples() {
  const select = $("example-select");
  if (state.config.authRequired && !$("token").value.trim()) {
    select.replaceChildren(el("option", { value: "" }, "Give a bearer token to list the examples"));
    return;
  }
  const chosen = select.value;
  const result = await api("api/examples");
  select.replaceChildren(el("option", { value: "" }, "Choose an example…"));
  if (!result.ok) { setStatus("Examples: HTTP " + result.status + " (a token may be needed)", true); return; }
  if ($("status").classList.contains("error")) setStatus("");
  for (const example of result.body.examples) {
    select.append(el("option", { value: example.id }, (example.scenario ? example.scenario + " — " : "") + example.title));
  }
  select.value = chosen;
  if (!result.body.examples.length) $("example-description").textContent = "No examples here: set EPIDURAL_CDS_WORKBENCH_EXAMPLES_DIR.";
}

async function start() {
  const config = await api("api/config");
  state.config = config.body || {};
  state.serviceId = state.config.serviceId;
  if (state.config.authRequired) {
    $("token-box").open = true;
    const notice = $("notice");
    notice.hidden = false;
    notice.textContent = "Authentication is on: paste a JWT from a trusted issuer under Bearer token.";
  }
  document.querySelectorAll(".mode").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
  $("example-select").addEventListener("change", (e) => chooseExample(e.target.value));
  $("bundle-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (file) {
      $("bundle-text").value = await file.text();
      document.body.dataset.bundleFile = file.name;
    }
  });
  $("evaluate").addEventListener("click", evaluate);
  // With authentication on, the example list needs the token: read it again once one is given.
  $("token").addEventListener("change", () => { if (state.config.authRequired) loadExamples(); });
  document.querySelectorAll(".copy").forEach((b) => b.addEventListener("click", async () => {
    const text = $(b.dataset.copy).textContent;
    try { await navigator.clipboard.writeText(text); b.textContent = "Copied"; } catch (_) {
      const range = document.createRange(); range.selectNodeContents($(b.dataset.copy));
      const selection = window.getSelection(); selection.removeAllRanges(); selection.addRange(range);
      b.textContent = "Selected: press Ctrl+C";
    }
  }));
  setMode("example");
  await loadExamples();
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);
