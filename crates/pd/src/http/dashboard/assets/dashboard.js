// Atoll dashboard: fetches /dashboard/api/* and renders the panels. No libraries, no build.
// Rendering is idempotent: a panel's DOM is replaced only when its HTML changed, so the
// auto-refresh does not flicker; the heatmap canvas is redrawn only when its data changed.
"use strict";

const REFRESH_MS = 3000;
const $ = (id) => document.getElementById(id);

const state = {
  sort: "start_key",
  order: "asc",
  filters: {},
  limit: "100",
  selected: null,
  heatmap: null,
  lastHeatmap: "",
};

// ---- formatting -------------------------------------------------------------------------

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
}

function num(n) {
  if (n === null || n === undefined) return "–";
  const v = Number(n);
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function dur(secs) {
  if (secs === null || secs === undefined) return "–";
  let s = Math.max(0, Math.floor(secs));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

function hhmm(unixSecs) {
  const t = new Date(unixSecs * 1000);
  return String(t.getHours()).padStart(2, "0") + ":" + String(t.getMinutes()).padStart(2, "0");
}

function keyHtml(k) {
  if (!k) return "";
  const title = k.infinite ? "" : `hex ${k.hex}${k.encoded ? " (memcomparable), decoded " + k.decoded : ""}`;
  return `<span class="key" title="${esc(title)}">${esc(k.display)}</span>`;
}

function stateBadge(s) {
  return `<span class="state state-${esc(s)}">${esc(s)}</span>`;
}

function card(k, v, title) {
  return `<div class="card"${title ? ` title="${esc(title)}"` : ""}><div class="k">${esc(k)}</div><div class="v">${v}</div></div>`;
}

// ---- plumbing ---------------------------------------------------------------------------

async function api(path) {
  const resp = await fetch(path, { cache: "no-store" });
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const msg = body && body.error ? body.error : (typeof body === "string" ? body : resp.statusText);
    throw new Error(`${resp.status}: ${msg}`);
  }
  return body;
}

// Sets innerHTML only when it changed.
function put(el, html) {
  if (el.dataset.html !== html) {
    el.innerHTML = html;
    el.dataset.html = html;
  }
}

function panelError(panelId, err) {
  const box = $(panelId).querySelector(".error");
  if (err) {
    box.textContent = String(err.message || err);
    box.hidden = false;
  } else {
    box.hidden = true;
  }
}

// ---- panels -----------------------------------------------------------------------------

function renderCluster(c) {
  $("cluster-line").textContent = `cluster ${c.cluster_id} · PD ${c.version} · leader ${c.leader}`;
  put($("cluster-body"), [
    card("cluster id", esc(c.cluster_id)),
    card("version", esc(c.version)),
    card("PD leader", esc(c.leader)),
    card("uptime", dur(c.uptime_secs), `since ${c.start_time}`),
    card("bootstrapped", c.bootstrapped ? "yes" : "no"),
    card("stores", num(c.store_count)),
    card("regions", num(c.region_count)),
    card("max replicas", num(c.max_replicas)),
  ].join(""));
  const rows = c.members.map((m) => `<tr><td>${esc(m.name)}${m.is_leader ? ' <span class="state state-Up">leader</span>' : ""}</td>
    <td>${esc(m.member_id)}</td><td class="key">${esc(m.client_urls.join(", "))}</td><td class="key">${esc(m.peer_urls.join(", "))}</td></tr>`);
  put($("members"), `<thead><tr><th>member</th><th>id</th><th>client URLs</th><th>peer URLs</th></tr></thead><tbody>${rows.join("")}</tbody>`);
  const gcAge = c.gc.age_secs === null ? "never advanced" : `${dur(c.gc.age_secs)} ago`;
  put($("activity-cards"), [
    card("last TSO", esc(c.tso.ts), `physical ${c.tso.physical_ms} ms, logical ${c.tso.logical}`),
    card("TSO time", esc(c.tso.time)),
    card("GC safe point", esc(c.gc.safe_point), c.gc.time || ""),
    card("GC safe point age", esc(gcAge)),
  ].join(""));
}

function renderStores(s) {
  const rows = s.stores.map((st) => {
    const used = st.capacity ? Math.min(100, (100 * st.used) / st.capacity) : 0;
    const labels = st.labels.map((l) => `<span class="label">${esc(l.key)}=${esc(l.value)}</span>`).join("");
    return `<tr data-store="${st.id}" data-state="${esc(st.state)}"><td>${st.id}</td><td class="key">${esc(st.address)}</td><td>${stateBadge(st.state)}</td><td>${labels}</td>
      <td class="num">${bytes(st.capacity)}</td><td class="num">${bytes(st.available)}</td>
      <td class="num">${bytes(st.used)} <span class="bar"><span style="width:${used.toFixed(0)}%"></span></span></td>
      <td class="num">${st.region_count}</td><td class="num">${st.leader_count}</td>
      <td class="num">${st.last_heartbeat_age_secs === null ? "never" : dur(st.last_heartbeat_age_secs) + " ago"}</td>
      <td class="num">${dur(st.uptime_secs)}</td><td>${esc(st.version)}</td></tr>`;
  });
  put($("stores"), `<thead><tr><th>id</th><th>address</th><th>state</th><th>labels</th><th class="num">capacity</th>
    <th class="num">available</th><th class="num">used</th><th class="num">regions</th><th class="num">leaders</th>
    <th class="num">last heartbeat</th><th class="num">uptime</th><th>version</th></tr></thead>
    <tbody>${rows.join("") || '<tr><td colspan="12" class="muted">no stores yet</td></tr>'}</tbody>`);
}

const REGION_COLUMNS = [
  ["id", "id", true], ["start_key", "start key", false], [null, "end key", false], [null, "peers", false],
  ["leader_store", "leader", false], ["version", "epoch", false], ["size", "size", true], ["keys", "keys", true],
  ["written_bytes", "written/s", true], ["read_bytes", "read/s", true],
];

function regionsQuery() {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(state.filters)) if (v !== "") p.set(k, v);
  p.set("sort", state.sort);
  p.set("order", state.order);
  p.set("limit", state.limit);
  return "/dashboard/api/regions?" + p.toString();
}

function peersHtml(r) {
  return r.peers.map((p) => {
    const cls = [p.is_leader ? "leader" : "", "role-" + p.role, p.is_down ? "down" : "", p.is_pending ? "pending" : ""].join(" ");
    const tags = (p.is_down ? " down" : "") + (p.is_pending ? " pending" : "") + (p.role !== "Voter" ? " " + p.role.toLowerCase() : "");
    return `<span class="${cls}" title="peer ${p.id} on store ${p.store_id}${esc(tags)}">s${p.store_id}${p.is_leader ? "★" : ""}${esc(tags)}</span>`;
  }).join(" ");
}

function renderRegions(list) {
  const head = REGION_COLUMNS.map(([key, label, isNum]) => {
    if (!key) return `<th${isNum ? ' class="num"' : ""}>${label}</th>`;
    const arrow = state.sort === key ? (state.order === "asc" ? " ▲" : " ▼") : "";
    return `<th data-sort="${key}" class="${state.sort === key ? "sorted" : ""}${isNum ? " num" : ""}">${label}${arrow}</th>`;
  }).join("");
  const rows = list.regions.map((r) => `<tr data-id="${r.id}" class="${state.selected === r.id ? "selected" : ""}">
    <td class="num">${r.id}</td><td>${keyHtml(r.start_key)}</td><td>${keyHtml(r.end_key)}</td><td>${peersHtml(r)}</td>
    <td>${r.leader ? "s" + r.leader.store_id : '<span class="down">none</span>'}</td>
    <td>${r.epoch.conf_ver}/${r.epoch.version}</td><td class="num">${num(r.approximate_size)} MiB</td>
    <td class="num">${num(r.approximate_keys)}</td><td class="num">${bytes(r.written_bytes_per_sec)}</td>
    <td class="num">${bytes(r.read_bytes_per_sec)}</td></tr>`);
  put($("regions"), `<thead><tr>${head}</tr></thead><tbody>${rows.join("") ||
    `<tr><td colspan="${REGION_COLUMNS.length}" class="muted">no region matches</td></tr>`}</tbody>`);
  $("regions-count").textContent = `showing ${list.regions.length} of ${list.matched} matching regions (${list.total} in the cluster)`;
}

function operatorRows(ops, ended) {
  return ops.map((o) => {
    const steps = o.steps.map((s) => `<li class="${s.done ? "done" : ""} ${s.current ? "current" : ""}">${esc(s.text)}</li>`).join("");
    const when = ended ? `${dur(o.ended_ago_secs)} ago` : `${dur(o.age_secs)}`;
    return `<tr><td><a href="#" data-region="${o.region_id}">${o.region_id}</a></td><td>${esc(o.desc)}</td><td>${esc(o.kind)}</td>
      <td>${esc(o.status)}</td><td class="num">${when}</td><td><ol class="steps" start="0">${steps}</ol></td></tr>`;
  }).join("");
}

function renderOperators(o) {
  const head = (w) => `<thead><tr><th>region</th><th>operator</th><th>kind</th><th>status</th><th class="num">${w}</th><th>steps</th></tr></thead>`;
  put($("ops-running"), head("age") + `<tbody>${operatorRows(o.running, false) || '<tr><td colspan="6" class="muted">none</td></tr>'}</tbody>`);
  put($("ops-recent"), head("ended") + `<tbody>${operatorRows(o.recent, true) || '<tr><td colspan="6" class="muted">none</td></tr>'}</tbody>`);
}

async function showRegion(id) {
  const box = $("region-detail");
  state.selected = id;
  box.hidden = false;
  try {
    const d = await api("/dashboard/api/regions/" + encodeURIComponent(id));
    const r = d.region;
    const op = d.operator
      ? `${esc(d.operator.status)}: ${esc(d.operator.desc)} (${esc(d.operator.brief)})<ol class="steps" start="0">${
        d.operator.steps.map((s) => `<li class="${s.done ? "done" : ""} ${s.current ? "current" : ""}">${esc(s.text)}</li>`).join("")}</ol>`
      : "none";
    put(box, `<h3>Region ${r.id} <button type="button" id="detail-close">close</button></h3><dl>
      <dt>start key</dt><dd>${keyHtml(r.start_key)} <span class="key muted">${esc(r.start_key.hex)}</span></dd>
      <dt>end key</dt><dd>${keyHtml(r.end_key)} <span class="key muted">${esc(r.end_key.hex)}</span></dd>
      <dt>epoch</dt><dd>conf_ver ${r.epoch.conf_ver}, version ${r.epoch.version}; term ${d.term}</dd>
      <dt>peers</dt><dd>${r.peers.map((p) => `peer ${p.id} on store ${p.store_id} (${esc(p.role)}${p.is_leader ? ", leader" : ""}${p.is_down ? ", down" : ""}${p.is_pending ? ", pending" : ""})`).join("<br>")}</dd>
      <dt>down peers</dt><dd>${d.down_peers.map((p) => `peer ${p.peer_id} on store ${p.store_id}, down ${dur(p.down_seconds)}`).join("<br>") || "none"}</dd>
      <dt>size</dt><dd>${num(r.approximate_size)} MiB, ${num(r.approximate_keys)} keys</dd>
      <dt>last report</dt><dd>over ${r.interval_secs} s: written ${bytes(d.written_bytes)} / ${num(d.written_keys)} keys, read ${bytes(d.read_bytes)} / ${num(d.read_keys)} keys
        (${bytes(r.written_bytes_per_sec)}/s written, ${bytes(r.read_bytes_per_sec)}/s read)</dd>
      <dt>operator</dt><dd>${op}</dd></dl>`);
  } catch (e) {
    put(box, `<div class="error">Region ${esc(id)}: ${esc(e.message)}</div>`);
  }
}

// ---- heatmap ----------------------------------------------------------------------------

// Black → purple → orange → yellow, on a log scale of the value.
function heatColour(v, max) {
  if (!v) return "#0d1117";
  const t = Math.log1p(v) / Math.log1p(max);
  const stops = [[13, 17, 23], [84, 30, 140], [220, 80, 40], [255, 220, 60], [255, 255, 210]];
  const x = Math.min(0.9999, Math.max(0, t)) * (stops.length - 1);
  const i = Math.floor(x);
  const f = x - i;
  const c = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

const HM = { left: 190, top: 8, bottom: 26, right: 8 };

function metricFormat(metric, v) {
  return metric.endsWith("bytes") ? bytes(v) : num(v) + " keys";
}

function drawHeatmap(h) {
  const canvas = $("heatmap");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#0d1117";
  ctx.fillRect(0, 0, W, H);
  const cols = h.times.length, rows = Math.max(0, h.keys.length - 1);
  const pw = W - HM.left - HM.right, ph = H - HM.top - HM.bottom;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#9aa4b2";
  // Time axis.
  const every = cols > 20 ? 10 : 2;
  for (let c = 0; c < cols; c++) {
    if ((cols - 1 - c) % every !== 0) continue;
    const label = hhmm(h.times[c]);
    const x = Math.min(HM.left + (c * pw) / cols, W - ctx.measureText(label).width - 2);
    ctx.fillText(label, x, H - 8);
  }
  // For tests that read the DOM (a canvas' pixels are not in it): what was drawn.
  canvas.dataset.columns = String(cols);
  canvas.dataset.rows = String(rows);
  canvas.dataset.cells = String(h.values.reduce((n, col) => n + col.filter((v) => v > 0).length, 0));
  if (!rows) {
    ctx.fillText("no traffic in this window yet", HM.left + 10, HM.top + 20);
    $("heatmap-note").textContent = "";
    return;
  }
  const cw = pw / cols, rh = ph / rows;
  for (let c = 0; c < cols; c++) {
    const col = h.values[c];
    for (let r = 0; r < rows; r++) {
      ctx.fillStyle = heatColour(col[r], h.max);
      ctx.fillRect(HM.left + c * cw, HM.top + r * rh, Math.ceil(cw), Math.ceil(rh));
    }
  }
  // Key axis: as many boundary labels as fit.
  ctx.fillStyle = "#9aa4b2";
  const step = Math.max(1, Math.ceil(14 / rh));
  for (let r = 0; r <= rows; r += step) {
    const label = h.keys[r].display;
    ctx.fillText(label.length > 30 ? label.slice(0, 29) + "…" : label, 4, HM.top + r * rh + 10);
  }
  $("heatmap-note").textContent = `${cols} columns of ${h.bucket_secs} s × ${rows} key ranges; brightest = ${metricFormat(h.metric, h.max)} per cell`;
}

function heatmapCell(ev) {
  const h = state.heatmap;
  if (!h || h.keys.length < 2) return null;
  const canvas = $("heatmap");
  const rect = canvas.getBoundingClientRect();
  const x = ((ev.clientX - rect.left) * canvas.width) / rect.width;
  const y = ((ev.clientY - rect.top) * canvas.height) / rect.height;
  const cols = h.times.length, rows = h.keys.length - 1;
  const pw = canvas.width - HM.left - HM.right, ph = canvas.height - HM.top - HM.bottom;
  const c = Math.floor(((x - HM.left) * cols) / pw), r = Math.floor(((y - HM.top) * rows) / ph);
  if (c < 0 || c >= cols || r < 0 || r >= rows) return null;
  return { c, r, x: ev.clientX - rect.left, y: ev.clientY - rect.top };
}

function onHeatmapMove(ev) {
  const tip = $("heatmap-tip");
  const cell = heatmapCell(ev);
  if (!cell) { tip.hidden = true; return; }
  const h = state.heatmap;
  tip.innerHTML = `${esc(hhmm(h.times[cell.c]))}–${esc(hhmm(h.times[cell.c] + h.bucket_secs))}<br>
    ${esc(h.keys[cell.r].display)} … ${esc(h.keys[cell.r + 1].display)}<br>
    <b>${esc(metricFormat(h.metric, h.values[cell.c][cell.r]))}</b>`;
  tip.style.left = cell.x + 14 + "px";
  tip.style.top = cell.y + 10 + "px";
  tip.hidden = false;
}

function drawLegend() {
  const c = document.createElement("canvas");
  c.width = 100; c.height = 10;
  const g = c.getContext("2d");
  for (let i = 0; i < 100; i++) { g.fillStyle = heatColour(Math.expm1((i / 99) * Math.log1p(1000)), 1000); g.fillRect(i, 0, 1, 10); }
  const box = $("heatmap-legend");
  box.textContent = "0 ";
  box.appendChild(c);
  box.appendChild(document.createTextNode(" max (log scale)"));
}

// ---- refresh loop -----------------------------------------------------------------------

async function refresh() {
  const hq = `/dashboard/api/heatmap?metric=${$("heatmap-metric").value}&window=${$("heatmap-window").value}`;
  const [cluster, stores, regions, ops, heat] = await Promise.allSettled([
    api("/dashboard/api/cluster"), api("/dashboard/api/stores"), api(regionsQuery()),
    api("/dashboard/api/operators"), api(hq),
  ]);
  const apply = (res, panel, render) => {
    if (res.status === "fulfilled") { panelError(panel, null); render(res.value); } else { panelError(panel, res.reason); }
  };
  apply(cluster, "cluster-panel", renderCluster);
  if (cluster.status !== "fulfilled") panelError("activity-panel", cluster.reason);
  apply(stores, "stores-panel", renderStores);
  apply(regions, "regions-panel", renderRegions);
  apply(ops, "activity-panel", renderOperators);
  apply(heat, "heatmap-panel", (h) => {
    const text = JSON.stringify(h.values) + JSON.stringify(h.keys.map((k) => k.hex)) + h.times[0];
    state.heatmap = h;
    if (text !== state.lastHeatmap) { state.lastHeatmap = text; drawHeatmap(h); }
  });
  if (state.selected !== null && !$("region-detail").hidden) await showRegion(state.selected);
  $("refreshed").textContent = "updated " + new Date().toLocaleTimeString();
  document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
}

let timer = null;
function schedule() {
  clearTimeout(timer);
  if ($("auto-refresh").checked) timer = setTimeout(async () => { await refresh(); schedule(); }, REFRESH_MS);
}

function readFilters() {
  state.filters = {
    key: $("f-key").value.trim(),
    keyspace: $("f-keyspace").value.trim(),
    mode: $("f-mode").value,
    store: $("f-store").value.trim(),
  };
  state.limit = $("f-limit").value.trim() || "100";
}

// The page's own query string presets the controls: /dashboard?key=…&keyspace=…&mode=…&store=…
// &limit=…&region=…&metric=…&window=… (links to a view; bad values show the API's message).
function presetFromUrl() {
  const q = new URLSearchParams(window.location.search);
  const fields = { key: "f-key", keyspace: "f-keyspace", mode: "f-mode", store: "f-store", limit: "f-limit",
    metric: "heatmap-metric", window: "heatmap-window" };
  for (const [name, id] of Object.entries(fields)) if (q.has(name)) $(id).value = q.get(name);
  if (q.has("region")) { $("f-region").value = q.get("region"); state.selected = q.get("region"); $("region-detail").hidden = false; }
}

function init() {
  drawLegend();
  presetFromUrl();
  $("regions-form").addEventListener("submit", (ev) => { ev.preventDefault(); readFilters(); refresh(); });
  $("f-clear").addEventListener("click", () => {
    for (const id of ["f-key", "f-keyspace", "f-store"]) $(id).value = "";
    $("f-mode").value = "";
    readFilters();
    refresh();
  });
  $("f-go").addEventListener("click", () => showRegion($("f-region").value.trim()));
  $("regions").addEventListener("click", (ev) => {
    const th = ev.target.closest("th[data-sort]");
    if (th) {
      const key = th.dataset.sort;
      state.order = state.sort === key && state.order === "asc" ? "desc" : "asc";
      state.sort = key;
      refresh();
      return;
    }
    const tr = ev.target.closest("tr[data-id]");
    if (tr) showRegion(Number(tr.dataset.id)).then(refresh);
  });
  $("region-detail").addEventListener("click", (ev) => {
    if (ev.target.id === "detail-close") { $("region-detail").hidden = true; state.selected = null; refresh(); }
  });
  $("activity-panel").addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-region]");
    if (a) { ev.preventDefault(); showRegion(Number(a.dataset.region)); $("regions-panel").scrollIntoView(); }
  });
  for (const id of ["heatmap-metric", "heatmap-window"]) $(id).addEventListener("change", refresh);
  $("heatmap").addEventListener("mousemove", onHeatmapMove);
  $("heatmap").addEventListener("mouseleave", () => { $("heatmap-tip").hidden = true; });
  $("auto-refresh").addEventListener("change", schedule);
  readFilters();
  refresh().then(schedule);
}

init();
