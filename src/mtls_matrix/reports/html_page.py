"""The HTML report's inline stylesheet and script (kept apart from html.py so each reads whole).

The script builds every element with textContent, never innerHTML: cell data holds library error
messages, and a report must not run markup a peer wrote into an exception.
"""

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1rem 1.5rem; color: #212121; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
h2 { font-size: 1.1rem; margin: 1rem 0 .4rem; }
h3 { font-size: .95rem; margin: .8rem 0 .2rem; }
code, pre, .mono { font-family: ui-monospace, monospace; font-size: 12.5px; }
pre { background: #f5f5f5; padding: .4rem .6rem; white-space: pre-wrap; word-break: break-all; margin: .2rem 0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .8rem; margin: .2rem 0; }
dt { color: #555; } dd { margin: 0; word-break: break-word; }
#filters { display: flex; flex-wrap: wrap; gap: .6rem; margin: .6rem 0; }
#filters fieldset { border: 1px solid #ccc; padding: .2rem .6rem; }
#filters label { margin-right: .6rem; white-space: nowrap; }
table { border-collapse: collapse; }
#heatmap th { font-weight: 600; padding: .2rem .5rem; font-family: ui-monospace, monospace; font-size: 12.5px; }
#heatmap tbody th { text-align: right; }
#heatmap td.entry { min-width: 9rem; height: 3.6rem; text-align: center; cursor: pointer;
  border: 2px solid #fff; padding: .2rem; font-size: 12.5px; }
#heatmap td.entry.selected { outline: 3px solid #ffb300; outline-offset: -3px; }
#heatmap td.entry span { display: block; }
#heatmap td.entry:focus { outline: 3px solid #1565c0; outline-offset: -3px; }
#detail { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
#pair { flex: 1 1 34rem; max-width: 60rem; }
#drill { flex: 1 1 30rem; border-left: 4px solid #999; padding-left: 1rem; }
#cells td, #cells th, .grid td, .grid th { border-bottom: 1px solid #e0e0e0; padding: .15rem .5rem; text-align: left;
  vertical-align: top; }
#cells tbody tr { cursor: pointer; }
#cells tbody tr:hover { background: #fff8e1; }
#cells tbody tr.selected { background: #ffecb3; }
.badge { display: inline-block; padding: 0 .4rem; border-radius: 3px; font-weight: 600; font-size: 12px; }
.legend .badge { margin-right: .4rem; }
.no { color: #9e9e9e; }
"""

SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const BY_ID = new Map(DATA.cells.map((c) => [c.id, c]));
const FILTERS = [  // [key, legend, values of one cell]
  ["group", "scenario group", (c) => [c.group]],
  ["tls", "TLS version", (c) => (c.tags || []).filter((t) => /^tls1/.test(t))],
  ["profile", "profile", (c) => [c.profile]],
];
const state = {pair: null, cell: null};

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function short(peer) { return peer.replace(/^[a-z]+:/, ""); }

function badge(verdict) {
  const [fill, ink] = DATA.colours[verdict] || DATA.colours[""];
  const b = el("span", {className: "badge", textContent: verdict});
  b.style.background = fill; b.style.color = ink;
  return b;
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
    for (const value of filterValues(DATA.cells.flatMap(valuesOf))) {
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
  for (const input of document.querySelectorAll("#filters input:checked")) {
    picked[input.dataset.filter].add(input.value);
  }
  return picked;
}

function visible(cell, picked) {
  // A cell with no value for a filter (no tls1x tag) is not excluded by it: unknown is not "other".
  return FILTERS.every(([key, , valuesOf]) => {
    const values = valuesOf(cell);
    return values.length === 0 || values.some((v) => picked[key].has(v));
  });
}

function shownCells() { const picked = chosen(); return DATA.cells.filter((c) => visible(c, picked)); }

// ---------------------------------------------------------------- heatmap

function tally(cells) {
  const counts = {};
  for (const v of DATA.verdicts) counts[v] = 0;
  for (const c of cells) counts[c.verdict] += 1;
  return counts;
}

function worst(counts) { return DATA.verdicts.find((v) => counts[v] > 0) || ""; }

function entry(cells, server, client) {
  const counts = tally(cells);
  const td = el("td", {className: "entry", tabIndex: 0, title: `${short(server)} × ${short(client)}`});
  Object.assign(td.dataset, {server: server, client: client, total: cells.length});
  const [fill, ink] = DATA.colours[worst(counts)];
  td.style.background = fill; td.style.color = ink;
  for (const v of DATA.verdicts) {
    if (!counts[v]) continue;
    const span = el("span", {textContent: `${counts[v]} ${v}`});
    span.dataset.verdict = v; span.dataset.count = counts[v];
    td.append(span);
  }
  if (!cells.length) td.append(el("span", {textContent: "none shown"}));
  if (state.pair && state.pair[0] === server && state.pair[1] === client) td.classList.add("selected");
  td.addEventListener("click", () => showPair(server, client));
  td.addEventListener("keydown", (e) => { if (e.key === "Enter") showPair(server, client); });
  return td;
}

function renderHeatmap(cells) {
  const servers = [...new Set(DATA.cells.map((c) => c.server))].sort();
  const clients = [...new Set(DATA.cells.map((c) => c.client))].sort();
  const byPair = new Map();
  for (const c of cells) {
    const key = c.server + "\n" + c.client;
    if (!byPair.has(key)) byPair.set(key, []);
    byPair.get(key).push(c);
  }
  const head = el("tr", {}, el("th", {textContent: "client \\ server"}),
    ...servers.map((s) => el("th", {textContent: short(s)})));
  const body = clients.map((client) => el("tr", {}, el("th", {textContent: short(client)}),
    ...servers.map((server) => entry(byPair.get(server + "\n" + client) || [], server, client))));
  document.getElementById("heatmap").replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
}

function renderTotals(cells) {
  const counts = tally(cells);
  const p = document.getElementById("totals");
  p.replaceChildren(`${cells.length} of ${DATA.cells.length} cells shown: `);
  for (const v of DATA.verdicts) if (counts[v]) p.append(badge(v), ` ${counts[v]}  `);
  p.append(" — colour: the worst verdict of the pair; click an entry for its cells.");
}

function refresh() {
  const cells = shownCells();
  renderTotals(cells);
  renderHeatmap(cells);
  if (state.pair) showPair(...state.pair);
}

// ---------------------------------------------------------------- one pair's cells

function showPair(server, client) {
  state.pair = [server, client];
  for (const td of document.querySelectorAll("#heatmap td.entry")) {
    td.classList.toggle("selected", td.dataset.server === server && td.dataset.client === client);
  }
  const rank = (c) => DATA.verdicts.indexOf(c.verdict);
  const cells = shownCells().filter((c) => c.server === server && c.client === client);
  cells.sort((a, b) => rank(a) - rank(b));  // stable: keeps the catalogue order within a verdict
  const rows = cells.map((c) => {
    const tr = el("tr", {}, el("td", {}, badge(c.verdict)), el("td", {className: "mono", textContent: c.scenario}),
      el("td", {textContent: c.profile}), el("td", {textContent: c.phase}),
      el("td", {className: "mono", textContent: (c.error || {}).canonical || ""}),
      el("td", {textContent: (c.error || {}).clarity || ""}), el("td", {textContent: c.reason || ""}));
    tr.dataset.id = c.id;
    if (c.id === state.cell) tr.classList.add("selected");
    tr.addEventListener("click", () => showCell(c.id));
    return tr;
  });
  const header = el("tr", {}, ...["verdict", "scenario", "profile", "phase", "error", "clarity", "reason"]
    .map((h) => el("th", {textContent: h})));
  const section = document.getElementById("pair");
  section.replaceChildren(el("h2", {textContent: `${short(server)} × ${short(client)}: ${cells.length} cells shown`}),
    el("table", {id: "cells"}, el("thead", {}, header), el("tbody", {}, ...rows)));
  section.hidden = false;
}

// ---------------------------------------------------------------- one cell

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

function grid(header, rows) {
  const row = (values, tag) => el("tr", {}, ...values.map((v) => el(tag, {textContent: v === undefined ? "" : v})));
  return el("table", {className: "grid"}, el("thead", {}, row(header, "th")),
    el("tbody", {}, ...rows.map((r) => row(r, "td"))));
}

function phaseRows(c) {
  const timings = c.timings || {};
  const decided = DATA.phases.indexOf(c.phase);
  const rows = DATA.phases.map((p, i) => {
    const reached = i <= decided || p in timings;
    const notes = [];
    if (p === c.phase) notes.push("outcome decided here");
    if (c.rejection && c.rejection.phase === p) notes.push(`rejected by the ${c.rejection.by}`);
    return [p, reached ? "reached" : "not reached", p in timings ? `${timings[p]} ms` : "", notes.join("; ")];
  });
  if ("total" in timings) rows.push(["total", "", `${timings.total} ms`, ""]);
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

function flakyBadge(c) {
  // Next to the first run's verdict: that verdict did not hold on every run.
  const b = el("span", {id: "drill-flaky", className: "badge", textContent: `FLAKY ${Math.round(c.runs.pass_rate * 100)}% PASS`});
  b.style.background = "#f0c000"; b.style.color = "#000"; b.style.marginLeft = "0.3rem";
  return b;
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
  // Filled only when the run was compared with a reviewed baseline.
  if (!c.baseline && !c.baseline_reason && !c.upstream) return [];
  const link = c.upstream ? el("a", {href: c.upstream, textContent: c.upstream, rel: "noreferrer"}) : null;
  return [el("h3", {textContent: "baseline"}),
    list([["known as", c.baseline], ["reason", c.baseline_reason], ["upstream", link || c.upstream]])];
}

function showCell(id) {
  const c = BY_ID.get(id);
  if (!c) return;
  state.cell = id;
  for (const tr of document.querySelectorAll("#cells tbody tr")) tr.classList.toggle("selected", tr.dataset.id === id);
  const drill = document.getElementById("drill");
  drill.style.borderColor = (DATA.colours[c.verdict] || DATA.colours[""])[0];
  drill.replaceChildren(...drillHeader(c), ...drillClient(c), ...drillServer(c), ...drillRest(c));
  drill.hidden = false;
  // A shareable address for this cell; replaceState so Back leaves the report, not each click.
  // Some browsers refuse history changes for file:// pages; the drill-down works without it.
  try { history.replaceState(null, "", "#cell=" + encodeURIComponent(id)); } catch (err) { /* no shareable link */ }
}

function drillHeader(c) {
  const scenario = `${c.scenario} (${c.group}; ${(c.tags || []).join(", ")})`;
  return [
    el("h2", {}, el("code", {id: "drill-id", textContent: c.id})),
    el("p", {}, badge(c.verdict), c.flaky ? flakyBadge(c) : "", " ",
      el("span", {id: "drill-reason", textContent: c.reason || ""})),
    list([["server", c.server], ["client", c.client], ["scenario", scenario], ["profile", c.profile],
      ["family", c.family || "ws"], ["expectation", c.expectation]]),
    el("h3", {textContent: "phases"}), grid(["phase", "", "at", ""], phaseRows(c)),
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
  return [
    el("h3", {textContent: "what the server saw"}),
    list([["accepted TCP", yes(s.accepted_tcp)], ...tlsPairs(s.tls), ["handler ran", yes(s.handler_ran)],
      ["identity in handler", s.handler_peer_cn], ["identity error", s.handler_identity_error],
      ["close code", s.close_code], ["close reason", s.close_reason]]),
  ];
}

function drillRest(c) {
  const steps = (c.steps || []).map((x) => [x.op, x.ok ? "ok" : "failed", x.detail,
    x.ms === undefined ? "" : `${x.ms} ms`]);
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
"""
