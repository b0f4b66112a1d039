"use strict";
// The report's script (reports/html.py). Every element is built with textContent, never innerHTML:
// cell data holds library error messages, and a report must not run markup a peer wrote into an
// exception. A link gets an href only when it is http(s).
const DATA = JSON.parse(document.getElementById("data").textContent);
const CELLS = DATA.cells.map(cellOf);
const BY_ID = new Map(CELLS.map((c) => [c.id, c]));
const FILTERS = [  // [key, legend, values of one cell]
  ["group", "scenario group", (c) => [c.group]],
  ["tls", "TLS version", (c) => c.tags.filter((t) => /^tls1/.test(t))],
  ["profile", "profile", (c) => [c.profile]],
];
const STATE_OF = {critical: "insecure", broken: "broken", advisory: "works with advisories"};
const state = {pair: null, cell: null, finding: null};
let details = null;  // every cell's full record, decompressed on the first drill-down

function short(peer) { return peer.replace(/^[a-z]+:/, ""); }

function cellOf(row, index) {
  const c = {index: index};
  DATA.columns.forEach((name, i) => {
    c[name] = i === 0 || name === "finding" ? row[i] : DATA.strings[row[i]];
  });
  c.tags = c.tags ? c.tags.split(" ") : [];
  if (!c.id) c.id = `${short(c.server)}-${short(c.client)}-${c.scenario}${c.profile === "tuned" ? "-tuned" : ""}`;
  return c;
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function webLink(url, label) {
  return /^https?:\/\//i.test(url || "") ? el("a", {href: url, textContent: label || url, rel: "noreferrer"})
    : el("span", {textContent: label || url || ""});
}

function badge(text, colour) {
  const [fill, ink] = colour || DATA.colours["not run"];
  const b = el("span", {className: "badge", textContent: text});
  b.style.background = fill; b.style.color = ink;
  return b;
}

function verdictBadge(verdict) {
  const colour = {PASS: DATA.colours.works, INSECURE: DATA.colours.insecure, FAIL: DATA.colours.broken,
    HANG: DATA.colours.broken, ERROR: DATA.colours.broken}[verdict];
  return badge(verdict, colour);
}

function grid(header, rows, props) {
  const row = (values, tag) => el("tr", {}, ...values.map((v) => el(tag, {}, v instanceof Node ? v : (v ?? ""))));
  return el("table", Object.assign({className: "grid"}, props || {}), el("thead", {}, row(header, "th")),
    el("tbody", {}, ...rows.map((r) => row(r, "td"))));
}

// ---------------------------------------------------------------- findings

function showFinding(index) {
  const f = DATA.findings[index];
  state.finding = index;
  for (const tr of document.querySelectorAll("#finding-table tbody tr")) {
    tr.classList.toggle("selected", +tr.dataset.finding === index);
  }
  const cells = CELLS.filter((c) => c.finding === index);
  const facts = [["severity", f.severity], ["blamed", f.layer], ["libraries", f.libraries.join(", ")],
    ["the user sees", f.sees], ["why", f.why], ["workaround", f.workaround], ["stability", f.stability]];
  const links = f.links.map((l) => el("li", {}, webLink(l.url, l.text), ` (${l.status})`));
  const pairs = grid(["blamed", "with", "scenarios", "cells"], f.pairs.map(([blamed, partners, scenarios, counts]) =>
    [blamed, partners.join(", "), scenarios.join(", "),
      Object.entries(counts).map(([v, n]) => `${n} ${v}`).join(", ")]));
  const shown = cells.slice(0, 300);
  const rows = shown.map((c) => {
    const tr = el("tr", {}, el("td", {}, verdictBadge(c.verdict)), el("td", {className: "mono", textContent: c.id}),
      el("td", {textContent: c.phase}), el("td", {className: "mono", textContent: c.canonical}));
    tr.dataset.id = c.id;
    tr.addEventListener("click", () => { showPair(c.server, c.client); showCell(c.id); });
    return tr;
  });
  const table = el("table", {className: "grid", id: "finding-cells"},
    el("thead", {}, el("tr", {}, ...["verdict", "cell", "phase", "error"].map((h) => el("th", {textContent: h})))),
    el("tbody", {}, ...rows));
  const box = document.getElementById("finding-detail");
  box.replaceChildren(el("h3", {id: "finding-title", textContent: `${f.id}: ${f.title}`}),
    el("dl", {}, ...facts.filter(([, v]) => v).flatMap(([k, v]) => [el("dt", {textContent: k}),
      el("dd", {textContent: v})])),
    ...(f.detail.length ? [el("ul", {}, ...f.detail.map((d) => el("li", {textContent: d})))] : []),
    ...(links.length ? [el("h3", {textContent: "upstream"}), el("ul", {}, ...links)] : []),
    el("h3", {textContent: "pairs"}), pairs,
    el("h3", {textContent: `cells (${cells.length}${cells.length > shown.length ? `, first ${shown.length} shown` : ""})`}),
    table);
  box.hidden = false;
}

for (const tr of document.querySelectorAll("#finding-table tbody tr")) {
  tr.addEventListener("click", () => showFinding(+tr.dataset.finding));
  tr.addEventListener("keydown", (e) => { if (e.key === "Enter") showFinding(+tr.dataset.finding); });
}

// ---------------------------------------------------------------- filters

function filterValues(values) {
  const order = (v) => { const i = DATA.groups.indexOf(v); return i < 0 ? DATA.groups.length : i; };
  return [...new Set(values)].sort((a, b) => order(a) - order(b) || (a < b ? -1 : a > b ? 1 : 0));
}

function buildFilters() {
  const box = document.getElementById("filters");
  for (const [key, legend, valuesOf] of FILTERS) {
    const set = el("fieldset", {}, el("legend", {textContent: legend}));
    for (const value of filterValues(CELLS.flatMap(valuesOf))) {
      const input = el("input", {type: "checkbox", checked: true, value: value, id: `f-${key}-${value}`});
      input.dataset.filter = key;
      input.addEventListener("change", refresh);
      set.append(el("label", {htmlFor: input.id}, input, " " + value));
    }
    box.append(set);
  }
}

function chosen() {
  const picked = {};
  for (const [key] of FILTERS) picked[key] = new Set();
  for (const input of document.querySelectorAll("#filters input:checked")) picked[input.dataset.filter].add(input.value);
  return picked;
}

function visible(cell, picked) {
  // A cell with no value for a filter (no tls1x tag) is not excluded by it: unknown is not "other".
  return FILTERS.every(([key, , valuesOf]) => {
    const values = valuesOf(cell);
    return values.length === 0 || values.some((v) => picked[key].has(v));
  });
}

function shownCells() { const picked = chosen(); return CELLS.filter((c) => visible(c, picked)); }

// ---------------------------------------------------------------- heatmap

function pairState(cells) {
  // The worst severity among the pair's cells that count: not declared, not the harness's, not a control.
  const counted = cells.filter((c) => !["UNSUPPORTED", "SKIPPED", "ERROR"].includes(c.verdict) && c.severity !== "control");
  for (const severity of ["critical", "broken", "advisory"]) {
    if (counted.some((c) => c.severity === severity)) return STATE_OF[severity];
  }
  return counted.length ? "works" : "not run";
}

function entry(cells, server, client) {
  const pair = pairState(cells);
  const td = el("td", {className: "entry", tabIndex: 0, title: `${short(server)} × ${short(client)}: ${pair}`});
  Object.assign(td.dataset, {server: server, client: client, state: pair});
  const [fill, ink] = DATA.colours[pair];
  td.style.background = fill; td.style.color = ink;
  for (const v of DATA.verdicts) {
    const n = cells.filter((c) => c.verdict === v).length;
    if (!n) continue;
    const span = el("span", {textContent: `${n} ${v}`});
    span.dataset.verdict = v; span.dataset.count = n;
    td.append(span);
  }
  if (!cells.length) td.append(el("span", {textContent: "none shown"}));
  if (state.pair && state.pair[0] === server && state.pair[1] === client) td.classList.add("selected");
  td.addEventListener("click", () => showPair(server, client));
  td.addEventListener("keydown", (e) => { if (e.key === "Enter") showPair(server, client); });
  return td;
}

function renderHeatmaps(cells) {
  const byPair = new Map();
  for (const c of cells) {
    const key = c.server + "\n" + c.client;
    if (!byPair.has(key)) byPair.set(key, []);
    byPair.get(key).push(c);
  }
  const tables = DATA.families.map(({family, servers, clients}) => {
    const head = el("tr", {}, el("th", {textContent: `${family}: client \\ server`}),
      ...servers.map((s) => el("th", {textContent: short(s)})));
    const body = clients.map((client) => el("tr", {}, el("th", {textContent: short(client)}),
      ...servers.map((server) => entry(byPair.get(server + "\n" + client) || [], server, client))));
    return el("table", {className: "heatmap", id: `heatmap-${family}`}, el("thead", {}, head), el("tbody", {}, ...body));
  });
  document.getElementById("heatmaps").replaceChildren(...tables);
}

function renderTotals(cells) {
  const p = document.getElementById("totals");
  p.replaceChildren(`${cells.length} of ${CELLS.length} cells shown: `);
  for (const v of DATA.verdicts) {
    const n = cells.filter((c) => c.verdict === v).length;
    if (n) p.append(verdictBadge(v), ` ${n}  `);
  }
  p.append(" — colour: the worst severity of the pair (");
  for (const s of DATA.states) p.append(badge(s, DATA.colours[s]), " ");
  p.append("); click an entry for its cells.");
}

function refresh() {
  const cells = shownCells();
  renderTotals(cells);
  renderHeatmaps(cells);
  if (state.pair) showPair(...state.pair);
}

// ---------------------------------------------------------------- one pair's cells

function showPair(server, client) {
  state.pair = [server, client];
  for (const td of document.querySelectorAll(".heatmap td.entry")) {
    td.classList.toggle("selected", td.dataset.server === server && td.dataset.client === client);
  }
  const rank = (c) => DATA.verdicts.indexOf(c.verdict);
  const cells = shownCells().filter((c) => c.server === server && c.client === client);
  cells.sort((a, b) => rank(a) - rank(b));  // stable: keeps the catalogue order within a verdict
  const rows = cells.map((c) => {
    const finding = c.finding >= 0 ? DATA.findings[c.finding].id : "";
    const tr = el("tr", {}, el("td", {}, verdictBadge(c.verdict)), el("td", {className: "mono", textContent: c.scenario}),
      el("td", {textContent: c.profile}), el("td", {textContent: c.phase}),
      el("td", {className: "mono", textContent: c.canonical}), el("td", {textContent: c.clarity}),
      el("td", {textContent: c.severity}), el("td", {className: "mono", textContent: finding}),
      el("td", {textContent: c.reason}));
    tr.dataset.id = c.id;
    if (c.id === state.cell) tr.classList.add("selected");
    tr.addEventListener("click", () => showCell(c.id));
    return tr;
  });
  const header = el("tr", {}, ...["verdict", "scenario", "profile", "phase", "error", "clarity", "severity", "finding",
    "reason"].map((h) => el("th", {textContent: h})));
  const section = document.getElementById("pair");
  section.replaceChildren(el("h2", {textContent: `${short(server)} × ${short(client)}: ${cells.length} cells shown`}),
    el("table", {id: "cells"}, el("thead", {}, header), el("tbody", {}, ...rows)));
  section.hidden = false;
}

// ---------------------------------------------------------------- one cell

async function records() {
  if (!details) {
    const text = atob(document.getElementById("details").textContent.trim());
    const bytes = Uint8Array.from(text, (ch) => ch.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    details = JSON.parse(await new Response(stream).text());
  }
  return details;
}

function text(value) { return value === undefined || value === null || value === "" ? "—" : String(value); }
function yes(flag) { return flag ? "yes" : "no"; }

function list(pairs) {
  const dl = el("dl");
  for (const [k, v] of pairs) dl.append(el("dt", {textContent: k}), el("dd", {}, v instanceof Node ? v : text(v)));
  return dl;
}

function errorText(e) {
  if (!e) return "—";
  return [e.canonical, e.type, e.message].filter(Boolean).join(" · ") || "—";
}

function phaseRows(c) {
  // The phases the cell reached, in the order the cell reached them; the deciding one marked.
  const timings = Object.entries(c.timings || {}).filter(([p]) => p !== "total" && p !== "cell");
  timings.sort((a, b) => a[1] - b[1]);
  const rows = timings.map(([p, ms]) => [p, `${ms} ms`, [p === c.phase ? "outcome decided here" : "",
    c.rejection && c.rejection.phase === p ? `rejected by the ${c.rejection.by}` : ""].filter(Boolean).join("; ")]);
  if (!timings.some(([p]) => p === c.phase)) rows.push([c.phase, "", "outcome decided here"]);
  if (c.timings && "total" in c.timings) rows.push(["total", `${c.timings.total} ms`, ""]);
  return rows;
}

function tlsPairs(t) {
  t = t || {};
  return [["handshake", t.handshake], ["version", t.version], ["cipher", t.cipher], ["peer CN", t.peer_cn],
    ["TLS error", errorText(t.error)]];
}

function rejectionText(r) {
  if (!r) return "nobody rejected";
  return `the ${r.by}, at ${r.phase}` + (r.canonical ? ` (${r.canonical})` : "") + (r.message ? `: ${r.message}` : "");
}

function runsSection(c) {
  // Only cells run with --repeat or --confirm carry runs; the verdict above is the first run's.
  if (!c.runs) return [];
  const counts = Object.entries(c.runs.verdicts).map(([v, n]) => `${v} ${n}/${c.runs.count}`).join(", ");
  const rows = c.runs.each.map((r, i) => [String(i + 1), r.verdict, r.phase, r.canonical, r.ms == null ? "" : `${r.ms} ms`]);
  return [el("h3", {textContent: `runs (${c.runs.mode})`}),
    el("p", {id: "drill-runs", textContent: `${counts}; pass rate ${Math.round(c.runs.pass_rate * 100)}%` +
      (c.flaky ? "; FLAKY: the verdict varied" : "; every run agreed")}),
    grid(["run", "verdict", "phase", "canonical", "took"], rows)];
}

function baselineSection(c) {
  if (!c.baseline && !c.baseline_reason && !c.upstream) return [];
  return [el("h3", {textContent: "baseline"}),
    list([["known as", c.baseline], ["mechanism", c.mechanism], ["reason", c.baseline_reason],
      ["upstream", c.upstream ? webLink(c.upstream) : null]])];
}

async function showCell(id) {
  const summary = BY_ID.get(id);
  if (!summary) return;
  state.cell = id;
  for (const tr of document.querySelectorAll("#cells tbody tr")) tr.classList.toggle("selected", tr.dataset.id === id);
  const c = (await records())[summary.index];
  const drill = document.getElementById("drill");
  drill.style.borderColor = DATA.colours[pairState([summary])][0];
  drill.replaceChildren(...drillHeader(c, summary), ...drillClient(c), ...drillServer(c), ...drillRest(c));
  drill.hidden = false;
  // A shareable address for this cell; replaceState so Back leaves the report, not each click.
  // Some browsers refuse history changes for file:// pages; the drill-down works without it.
  try { history.replaceState(null, "", "#cell=" + encodeURIComponent(id)); } catch (err) { /* no shareable link */ }
}

function flakyBadge(c) {
  // Next to the first run's verdict: that verdict did not hold on every run.
  const b = badge(`FLAKY ${Math.round(c.runs.pass_rate * 100)}% PASS`, ["#f0c000", "#000"]);
  b.id = "drill-flaky"; b.style.marginLeft = "0.3rem";
  return b;
}

function drillHeader(c, summary) {
  const scenario = `${c.scenario} (${c.group}; ${(c.tags || []).join(", ")})`;
  const finding = summary.finding >= 0 ? DATA.findings[summary.finding] : null;
  return [
    el("h2", {}, el("code", {id: "drill-id", textContent: c.id})),
    el("p", {}, verdictBadge(c.verdict), c.flaky ? flakyBadge(c) : "", " ",
      el("span", {id: "drill-reason", textContent: c.reason || ""})),
    list([["server", c.server], ["client", c.client], ["scenario", scenario], ["profile", c.profile],
      ["family", c.family || "ws"], ["expectation", c.expectation], ["severity", c.severity || summary.severity],
      ["finding", finding ? `${finding.id}: ${finding.title}` : null],
      ["advisories", (c.advisories || []).map((a) => `${a.kind}: ${a.text}`).join("; ")]]),
    el("h3", {textContent: "phases"}), grid(["phase", "at", ""], phaseRows(c)),
  ];
}

function drillClient(c) {
  const e = c.error || {};
  const chain = (e.chain || []).length
    ? el("ol", {}, ...e.chain.map((x) => el("li", {className: "mono", textContent: x}))) : "—";
  return [
    el("h3", {textContent: "what the client's user sees"}),
    list([["canonical error", el("code", {id: "drill-canonical", textContent: text(e.canonical)})],
      ["clarity", e.clarity], ["exception type", e.type], ["message", e.message], ["chain", chain],
      ["rejected by", rejectionText(c.rejection)]]),
    el("h3", {textContent: "client TLS"}), list(tlsPairs(c.client_tls)),
  ];
}

function drillServer(c) {
  const s = c.server_saw || {};
  const wire = c.wire || {};
  return [
    el("h3", {textContent: "what the server saw"}),
    list([["accepted TCP", yes(s.accepted_tcp)], ...tlsPairs(s.tls), ["handler ran", yes(s.handler_ran)],
      ["identity in handler", s.handler_peer_cn], ["identity error", s.handler_identity_error],
      ["close code", s.close_code], ["close reason", s.close_reason],
      ["on the wire", c.wire ? [wire.alert && `alert ${wire.alert}`, wire.ended && `ended: ${wire.ended}`,
        wire.after_ms != null && `after ${wire.after_ms} ms`].filter(Boolean).join(", ") : null]]),
  ];
}

function drillRest(c) {
  const steps = (c.steps || []).map((x) => [x.op, x.ok ? "ok" : "failed", x.detail, x.ms === undefined ? "" : `${x.ms} ms`]);
  const versions = Object.entries(c.versions || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  return [
    el("h3", {textContent: "I/O steps"}),
    steps.length ? grid(["op", "result", "detail", "took"], steps) : el("p", {textContent: "none"}),
    ...runsSection(c),
    ...baselineSection(c),
    el("h3", {textContent: "versions"}), el("p", {textContent: versions || "—"}),
    el("h3", {textContent: "reproduce"}), el("pre", {id: "drill-repro", textContent: c.repro}),
  ];
}

function openFromHash() {
  const match = /^#cell=(.+)$/.exec(location.hash);
  const c = match && BY_ID.get(decodeURIComponent(match[1]));
  if (c) { showPair(c.server, c.client); showCell(c.id); }
}

buildFilters();
refresh();
openFromHash();
