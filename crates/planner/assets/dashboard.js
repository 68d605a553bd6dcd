// The dashboard: follows /v1/demand/stream (Server-Sent Events, read with
// fetch so that it can send the bearer token) and draws the demand as SVG;
// supply and rejections are polled. When the API answers 401 it asks for a
// token, kept for this tab only (sessionStorage). No external assets.
"use strict";

const state = {
  byCustomer: new Map(), // customer -> rows [{customer_id, sku, quarter, firm_units, planning_units, total_units}]
  supply: [],            // [{sku, quarter, on_hand, ordered, available}]
  rejections: null,      // {counts, total, rejections}
  exposure: null,        // /v1/exposure for the filters shown
  commits: [],           // /v1/commits: [{topic, key, attestation, commit}]
  changed: new Set(),    // row keys changed by the last event, to flash
  updatedAt: null,
};

const PALETTE = ["#3366cc", "#dc7633", "#2e9d5b", "#8e44ad", "#c0392b", "#16a085", "#b7950b", "#5d6d7e"];
const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en-US");
const rowKey = (r) => `${r.customer_id}|${r.sku}|${r.quarter}`;

function short(n) {
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(a >= 1e10 ? 0 : 1) + "B";
  if (a >= 1e6) return (n / 1e6).toFixed(a >= 1e7 ? 0 : 1) + "M";
  if (a >= 1e3) return (n / 1e3).toFixed(a >= 1e4 ? 0 : 1) + "k";
  return String(n);
}

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function filters() {
  return { customer: $("f-customer").value, sku: $("f-sku").value, quarter: $("f-quarter").value };
}

function allRows() {
  return [...state.byCustomer.values()].flat();
}

function filteredRows() {
  const f = filters();
  return allRows()
    .filter((r) => (!f.customer || r.customer_id === f.customer) && (!f.sku || r.sku === f.sku) && (!f.quarter || r.quarter === f.quarter))
    .sort((a, b) => rowKey(a).localeCompare(rowKey(b)));
}

function filteredSupply() {
  const f = filters();
  return state.supply.filter((s) => (!f.sku || s.sku === f.sku) && (!f.quarter || s.quarter === f.quarter));
}

function fillSelect(id, values) {
  const s = $(id);
  const current = s.value;
  const have = [...s.options].map((o) => o.value).slice(1);
  const want = [...new Set(values)].sort();
  if (have.join("\n") === want.join("\n")) return;
  s.replaceChildren(el("option", { value: "" }, "all"), ...want.map((v) => el("option", { value: v }, v)));
  s.value = want.includes(current) ? current : "";
}

function customerColor(customers, c) {
  return PALETTE[customers.indexOf(c) % PALETTE.length];
}

function renderChart(rows, supply) {
  const customers = [...new Set(allRows().map((r) => r.customer_id))].sort();
  const quarters = [...new Set([...rows.map((r) => r.quarter), ...supply.map((s) => s.quarter)])].sort();
  const W = Math.max(640, $("chart").clientWidth || 900), H = 300;
  const m = { l: 64, r: 16, t: 24, b: 28 };
  const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  // Defs: one stripe pattern per customer for planning units.
  const defs = svg("defs");
  customers.forEach((c) => {
    const p = svg("pattern", { id: `stripe-${customers.indexOf(c)}`, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
    p.append(svg("rect", { width: 6, height: 6, fill: customerColor(customers, c), "fill-opacity": 0.25 }));
    p.append(svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: customerColor(customers, c), "stroke-width": 3 }));
    defs.append(p);
  });
  root.append(defs);
  const stack = new Map(quarters.map((q) => [q, []]));
  for (const c of customers) {
    for (const q of quarters) {
      const firm = rows.filter((r) => r.customer_id === c && r.quarter === q).reduce((a, r) => a + r.firm_units, 0);
      const planning = rows.filter((r) => r.customer_id === c && r.quarter === q).reduce((a, r) => a + r.planning_units, 0);
      if (firm) stack.get(q).push({ c, kind: "firm", units: firm });
      if (planning) stack.get(q).push({ c, kind: "planning", units: planning });
    }
  }
  const supplyBy = new Map(quarters.map((q) => [q, supply.filter((s) => s.quarter === q).reduce((a, s) => a + s.available, 0)]));
  const max = Math.max(1, ...quarters.map((q) => stack.get(q).reduce((a, s) => a + s.units, 0)), ...supplyBy.values());
  const y = (v) => H - m.b - (v / max) * (H - m.t - m.b);
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    root.append(svg("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v), stroke: "#e3e6ec" }));
    root.append(svg("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, short(Math.round(v))));
  }
  root.append(svg("text", { x: m.l - 6, y: 11, "text-anchor": "end" }, "units"));
  if (!quarters.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no demand yet"));
  }
  const band = (W - m.l - m.r) / Math.max(1, quarters.length);
  const bw = Math.min(60, band * 0.6);
  const points = [];
  quarters.forEach((q, i) => {
    const x = m.l + band * i + (band - bw) / 2;
    let acc = 0;
    for (const s of stack.get(q)) {
      const r = svg("rect", {
        x, width: bw, y: y(acc + s.units), height: Math.max(0, y(acc) - y(acc + s.units)),
        fill: s.kind === "firm" ? customerColor(customers, s.c) : `url(#stripe-${customers.indexOf(s.c)})`,
        "data-customer": s.c, "data-quarter": q, "data-kind": s.kind,
      });
      r.append(svg("title", {}, `${s.c} ${q} ${s.kind}: ${fmt.format(s.units)} units`));
      root.append(r);
      acc += s.units;
    }
    const total = acc;
    if (total) root.append(svg("text", { x: x + bw / 2, y: y(total) - 4, "text-anchor": "middle" }, short(total)));
    root.append(svg("text", { x: x + bw / 2, y: H - m.b + 16, "text-anchor": "middle" }, q));
    if (supplyBy.get(q)) points.push([x + bw / 2, y(supplyBy.get(q)), supplyBy.get(q), q]);
  });
  if (points.length) {
    root.append(svg("polyline", { points: points.map((p) => `${p[0]},${p[1]}`).join(" "), fill: "none", stroke: "#1d2330", "stroke-width": 2, "stroke-dasharray": "5 3" }));
    for (const [px, py, v, q] of points) {
      const dot = svg("circle", { cx: px, cy: py, r: 4, fill: "#1d2330" });
      dot.append(svg("title", {}, `supply ${q}: ${fmt.format(v)} units`));
      root.append(dot);
    }
  }
  $("chart").replaceChildren(root);
  const legend = customers.map((c) => {
    const span = el("span");
    span.append(el("span", { class: "swatch", style: `background:${customerColor(customers, c)}` }), c);
    return span;
  });
  const firm = el("span");
  firm.append(el("span", { class: "swatch", style: "background:#888" }), "firm");
  const plan = el("span");
  plan.append(el("span", { class: "swatch", style: "background:repeating-linear-gradient(45deg,#888 0 3px,#ddd 3px 6px)" }), "planning");
  const sup = el("span");
  sup.append(el("span", { class: "swatch", style: "background:#1d2330;height:3px;vertical-align:3px" }), "supply");
  $("legend").replaceChildren(...legend, firm, plan, sup);
}

function renderCoverage(rows, supply) {
  const quarters = [...new Set([...rows.map((r) => r.quarter), ...supply.map((s) => s.quarter)])].sort();
  const body = $("coverage").tBodies[0];
  body.replaceChildren(...quarters.map((q) => {
    const firm = rows.filter((r) => r.quarter === q).reduce((a, r) => a + r.firm_units, 0);
    const total = rows.filter((r) => r.quarter === q).reduce((a, r) => a + r.total_units, 0);
    const sup = supply.filter((s) => s.quarter === q).reduce((a, s) => a + s.available, 0);
    const tr = el("tr", { "data-quarter": q });
    tr.append(el("td", {}, q), el("td", { class: "num" }, fmt.format(firm)), el("td", { class: "num" }, fmt.format(total)),
      el("td", { class: "num" }, fmt.format(sup)), el("td", { class: "num" }, total ? `${Math.round((100 * sup) / total)}%` : "–"));
    return tr;
  }));
}

function renderTable(rows) {
  const body = $("demand").tBodies[0];
  body.replaceChildren(...rows.map((r) => {
    const tr = el("tr", { "data-row": rowKey(r) });
    if (state.changed.has(rowKey(r))) tr.className = "flash";
    tr.append(el("td", {}, r.customer_id), el("td", {}, r.sku), el("td", {}, r.quarter),
      el("td", { class: "num firm" }, fmt.format(r.firm_units)), el("td", { class: "num planning" }, fmt.format(r.planning_units)),
      el("td", { class: "num total" }, fmt.format(r.total_units)));
    return tr;
  }));
  $("row-count").textContent = `(${rows.length} rows)`;
}

function renderCards(rows, supply) {
  const sum = (k) => rows.reduce((a, r) => a + r[k], 0);
  const total = sum("total_units");
  const sup = supply.reduce((a, s) => a + s.available, 0);
  $("total-firm").textContent = fmt.format(sum("firm_units"));
  $("total-planning").textContent = fmt.format(sum("planning_units"));
  $("total-units").textContent = fmt.format(total);
  $("total-supply").textContent = fmt.format(sup);
  $("total-coverage").textContent = total ? `${Math.round((100 * sup) / total)}%` : "–";
}

function renderRejections() {
  const r = state.rejections;
  if (!r) return;
  const counts = Object.entries(r.counts).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...counts.map((c) => c[1]));
  $("rejection-total").textContent = `(${fmt.format(r.total)} rejected submissions)`;
  $("rejection-codes").replaceChildren(...counts.map(([code, n]) => {
    const row = el("div", { class: "bar-row", "data-code": code });
    const bar = el("div", { class: "bar", style: `width:${(100 * n) / max}%` });
    row.append(el("span", { class: "code" }, code), el("div", {}, ""), el("span", { class: "num" }, fmt.format(n)));
    row.children[1].append(bar);
    return row;
  }));
  $("rejections").tBodies[0].replaceChildren(...r.rejections.slice(0, 20).map((v) => {
    const tr = el("tr");
    tr.append(el("td", {}, v.decided_at.replace("T", " ").slice(0, 19)), el("td", { class: "code" }, v.document_id ?? "(unreadable)"),
      el("td", { class: "num" }, v.revision ?? ""), el("td", {}, v.customer_id ?? ""), el("td", {}, v.stage), el("td", { class: "code" }, v.codes.join(" ")));
    return tr;
  }));
}

function renderExposure() {
  const e = state.exposure;
  if (!e) return;
  const pct = (x) => (x == null ? "–" : `${Math.round(100 * x)}%`);
  const num = (n) => el("td", { class: "num" }, fmt.format(n));
  $("exposure").tBodies[0].replaceChildren(...e.by_quarter.map((q) => {
    const tr = el("tr", { "data-quarter": q.quarter });
    tr.append(el("td", {}, q.quarter), num(q.approved_units), num(q.pending_units), num(q.not_filed_units),
      num(q.denied_units + q.revoked_units + q.foreign_licence_units), num(q.screening_hold_units), num(q.supply_units),
      el("td", { class: "num" }, pct(q.approved_coverage)), el("td", { class: "num" }, pct(q.approved_and_pending_coverage)));
    return tr;
  }));
  const lost = e.lost_firm_demand;
  const firm = lost.reduce((a, l) => a + l.firm_units, 0);
  const more = e.lost_not_listed ? `, ${fmt.format(e.lost_not_listed)} more not listed` : "";
  $("lost-total").textContent = `(${lost.length} documents, ${fmt.format(firm)} firm units${more})`;
  $("lost").tBodies[0].replaceChildren(...lost.slice(0, 50).map((l) => {
    const tr = el("tr", { "data-document": l.document_id });
    tr.append(el("td", { class: "code" }, l.document_id), num(l.revision), el("td", {}, l.customer_id),
      el("td", { class: "code" }, l.application_number), el("td", {}, l.licence_status),
      el("td", {}, l.decided_at.replace("T", " ").slice(0, 16)), num(l.firm_units), num(l.planning_units));
    return tr;
  }));
  $("over-approved").replaceChildren(...e.over_approved.map((o) => el("p", { class: "warning" },
    `Licence ${o.application_number} approves ${fmt.format(o.approved_units)} units of ${o.sku}; the documents that reference it ask for ${fmt.format(o.demanded_units)}.`)));
}

// The commits' lines summed per quarter, for the filters shown: requested,
// allocated, shortfall by reason.
function renderAllocation() {
  const f = filters();
  const byQuarter = new Map();
  const customers = new Map();
  for (const { commit } of state.commits) {
    if (f.customer && commit.customer_id !== f.customer) continue;
    for (const l of commit.lines) {
      if ((f.sku && l.sku !== f.sku) || (f.quarter && l.quarter !== f.quarter)) continue;
      if (!byQuarter.has(l.quarter)) byQuarter.set(l.quarter, { requested: 0, allocated: 0, reasons: new Map() });
      const q = byQuarter.get(l.quarter);
      q.requested += l.requested_units;
      q.allocated += l.allocated_units;
      for (const s of l.shortfalls) q.reasons.set(s.reason, (q.reasons.get(s.reason) || 0) + s.units);
      if (!customers.has(l.quarter)) customers.set(l.quarter, new Set());
      customers.get(l.quarter).add(commit.customer_id);
    }
  }
  const quarters = [...byQuarter.keys()].sort();
  const num = (n) => el("td", { class: "num" }, fmt.format(n));
  $("allocation").tBodies[0].replaceChildren(...quarters.map((quarter) => {
    const q = byQuarter.get(quarter);
    const reasons = [...q.reasons].sort((a, b) => b[1] - a[1]).map(([r, u]) => `${r} ${fmt.format(u)}`).join(", ");
    const tr = el("tr", { "data-quarter": quarter });
    tr.append(el("td", {}, quarter), num(q.requested), num(q.allocated),
      el("td", { class: "num" }, q.requested ? `${Math.round(100 * q.allocated / q.requested)}%` : "–"),
      el("td", { class: "code" }, reasons || "–"), num(customers.get(quarter).size));
    return tr;
  }));
  const made = state.commits.map((c) => c.commit.allocated_at).sort().pop();
  $("allocation-note").textContent = state.commits.length
    ? `${state.commits.length} commits, the latest made ${made.replace("T", " ").slice(0, 19)} (${state.commits[0].commit.method}); each is signed with the supplier's key: GET /v1/commits, checked with forecastctl commits verify.`
    : "No commit yet: the allocator publishes one per customer once it has read the pipeline's topics.";
}

// `fetch` run whenever asked, at most one request at a time: an ask while
// one runs makes one more run after it, so the last ask is served.
function oneAtATime(fetch) {
  let wanted = false, busy = false;
  return async () => {
    wanted = true;
    if (busy) return;
    busy = true;
    while (wanted) {
      wanted = false;
      try { await fetch(); } catch (_) { /* the status badge shows the connection state */ }
    }
    busy = false;
  };
}

const fetchCommits = oneAtATime(async () => {
  const res = await api("/v1/commits");
  if (res.ok) { state.commits = (await res.json()).commits; render(); }
});

// The exposure for the filters shown.
const fetchExposure = oneAtATime(async () => {
  const f = filters();
  const q = new URLSearchParams(Object.entries({ customer: f.customer, sku: f.sku, quarter: f.quarter }).filter(([, v]) => v));
  const res = await api(`/v1/exposure${q.size ? `?${q}` : ""}`);
  if (res.ok) { state.exposure = await res.json(); render(); }
});

let scheduled = false;
function render() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    const rows = filteredRows();
    const supply = filteredSupply();
    fillSelect("f-customer", allRows().map((r) => r.customer_id));
    fillSelect("f-sku", [...allRows().map((r) => r.sku), ...state.supply.map((s) => s.sku)]);
    fillSelect("f-quarter", [...allRows().map((r) => r.quarter), ...state.supply.map((s) => s.quarter)]);
    renderCards(rows, supply);
    renderChart(rows, supply);
    renderCoverage(rows, supply);
    renderTable(rows);
    renderRejections();
    renderExposure();
    renderAllocation();
    if (state.updatedAt) $("updated").textContent = `updated ${state.updatedAt.toLocaleTimeString()}`;
    state.changed.clear();
  });
}

const TOKEN_KEY = "forecast-token";

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// Shows the token form; `why` says what went wrong.
function askForToken(why) {
  $("login-why").textContent = why;
  $("status").className = "status connecting";
  $("status").textContent = "token needed";
  // The polls ask again every few seconds: take the focus only once.
  if ($("login").hidden) {
    $("login").hidden = false;
    $("token").focus();
  }
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  $("login").hidden = true;
  restart();
});

async function api(path) {
  const res = await fetch(path, { headers: authHeaders() });
  if (res.status === 401) {
    askForToken(sessionStorage.getItem(TOKEN_KEY) ? "That token was refused." : "This dashboard needs a planner token.");
    throw new Error("unauthorized");
  }
  return res;
}

// Server-Sent Events over fetch: `event:`/`data:` lines, a blank line ends one.
function dispatch(block, handlers) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (data.length && handlers[event]) handlers[event](data.join("\n"));
}

let generation = 0;

async function follow() {
  const mine = ++generation;
  const handlers = {
    snapshot: (text) => {
      const d = JSON.parse(text);
      state.byCustomer = new Map();
      for (const r of d.rows) {
        if (!state.byCustomer.has(r.customer_id)) state.byCustomer.set(r.customer_id, []);
        state.byCustomer.get(r.customer_id).push(r);
      }
      state.updatedAt = new Date();
      render();
      fetchExposure();
      fetchCommits();
    },
    commit: () => {
      state.updatedAt = new Date();
      fetchCommits();
    },
    licences: () => {
      state.updatedAt = new Date();
      fetchExposure();
    },
    demand: (text) => {
      const d = JSON.parse(text);
      const before = new Map((state.byCustomer.get(d.customer_id) || []).map((r) => [rowKey(r), r.total_units]));
      for (const r of d.rows) if (before.get(rowKey(r)) !== r.total_units) state.changed.add(rowKey(r));
      if (d.rows.length) state.byCustomer.set(d.customer_id, d.rows); else state.byCustomer.delete(d.customer_id);
      state.updatedAt = new Date();
      render();
    },
  };
  try {
    const res = await api("/v1/demand/stream");
    if (!res.ok || !res.body) throw new Error(`status ${res.status}`);
    $("status").className = "status live";
    $("status").textContent = "live";
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done || mine !== generation) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end), handlers);
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (e) {
    if (e.message === "unauthorized") return; // waits for a token
  }
  if (mine !== generation) return;
  $("status").className = "status connecting";
  $("status").textContent = "reconnecting…";
  setTimeout(() => { if (mine === generation) follow(); }, 2000);
}

async function poll(path, apply, every) {
  try {
    const res = await api(path);
    if (res.ok) { apply(await res.json()); render(); }
  } catch (_) { /* the status badge shows the connection state */ }
  setTimeout(() => poll(path, apply, every), every);
}

// (Re)starts the stream, after a token was given.
function restart() {
  follow();
}

for (const id of ["f-customer", "f-sku", "f-quarter"]) {
  $(id).addEventListener("change", () => { render(); fetchExposure(); });
}
window.addEventListener("resize", render);
follow();
poll("/v1/supply", (d) => { state.supply = d.supply; }, 10000);
poll("/v1/rejections?limit=20", (d) => { state.rejections = d; }, 5000);
