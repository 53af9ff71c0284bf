// Pulse's live page: reads the REST API every second and draws what it reads as SVG.
// No libraries and no network beyond Pulse itself.
"use strict";

const REFRESH_MS = 1000;
const WINDOW_S = 300;
const COLORS = ["#88c0d0", "#a3be8c", "#ebcb8b", "#d08770", "#b48ead", "#5e81ac", "#bf616a", "#8fbcbb"];
const SVG = "http://www.w3.org/2000/svg";
const latency = []; // [t_ms, p50, p95, p99], one per refresh

const $ = (sel) => document.querySelector(sel);

// With `auth.token` set, Pulse answers 401 to calls without `Authorization: Bearer`; the
// page asks for the token once and keeps it for this tab.
function withToken(options) {
  const token = sessionStorage.getItem("pulse.token");
  if (!token) return options;
  const o = Object.assign({}, options);
  o.headers = Object.assign({}, o.headers, { Authorization: `Bearer ${token}` });
  return o;
}

async function getJson(path, options) {
  let r = await fetch(path, withToken(options));
  if (r.status === 401) {
    const token = window.prompt("Pulse needs its API token (auth.token):");
    if (token) {
      sessionStorage.setItem("pulse.token", token.trim());
      r = await fetch(path, withToken(options));
    }
  }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${body.detail || body.error || ""}`);
  return body;
}

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(1) + "k";
  if (a >= 100) return v.toFixed(0);
  return v.toFixed(a >= 10 ? 1 : 2);
}

function time(ms) {
  return new Date(ms).toLocaleTimeString();
}

// lines: [{name, points: [[t, v]...]}]; bands: [{name, color, upper, lower}] (same t's).
function drawChart(svg, lines, bands = []) {
  svg.replaceChildren();
  const W = 640, H = 220, L = 54, R = 8, T = 8, B = 40;
  const all = lines.flatMap((l) => l.points).concat(bands.flatMap((b) => b.upper.concat(b.lower)));
  svg.dataset.points = String(lines.reduce((n, l) => n + l.points.length, 0));
  svg.dataset.lines = String(lines.filter((l) => l.points.length > 0).length);
  svg.dataset.bands = String(bands.filter((b) => b.upper.length > 0).length);
  if (all.length === 0) {
    svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "no data yet"));
    return;
  }
  let [t0, t1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [v0, v1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (t1 === t0) t1 = t0 + 1;
  if (v1 === v0) { v0 -= 1; v1 += 1; }
  const pad = (v1 - v0) * 0.05;
  v0 -= pad; v1 += pad;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - v0) / (v1 - v0)) * (H - T - B);
  svg.appendChild(el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  svg.appendChild(el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
  for (const v of [v0 + pad, (v0 + v1) / 2, v1 - pad]) {
    svg.appendChild(el("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  svg.appendChild(el("text", { x: L, y: H - B + 14 }, time(t0)));
  svg.appendChild(el("text", { x: W - R, y: H - B + 14, "text-anchor": "end" }, time(t1)));
  bands.forEach((b) => {
    if (b.upper.length === 0) return;
    const pts = b.upper.map((p) => `${x(p[0])},${y(p[1])}`)
      .concat(b.lower.slice().reverse().map((p) => `${x(p[0])},${y(p[1])}`));
    svg.appendChild(el("polygon", { points: pts.join(" "), fill: b.color, "fill-opacity": 0.25, stroke: "none", class: "band" }));
  });
  const legend = [];
  lines.forEach((l, i) => {
    const color = l.color || COLORS[i % COLORS.length];
    if (l.points.length === 0) return;
    const pts = l.points.map((p) => `${x(p[0])},${y(p[1])}`).join(" ");
    svg.appendChild(el("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 1.6, class: "line",
      "stroke-dasharray": l.dashed ? "5 3" : "none" }));
    legend.push([l.name, color]);
  });
  let lx = L;
  for (const [name, color] of legend.slice(0, 8)) {
    svg.appendChild(el("rect", { x: lx, y: H - 16, width: 10, height: 10, fill: color }));
    svg.appendChild(el("text", { x: lx + 14, y: H - 7 }, name));
    lx += 22 + name.length * 6.2;
  }
}

function gpuName(labels) {
  return `${labels.Hostname || "?"} GPU ${labels.gpu}`;
}

function byGpu(a, b) {
  return gpuName(a.labels).localeCompare(gpuName(b.labels), undefined, { numeric: true });
}

async function seriesLines(metric) {
  const q = encodeURIComponent(`{__name__="${metric}"}`);
  const r = await getJson(`/api/v1/series?match=${q}&window_s=${WINDOW_S}`);
  return r.series.sort(byGpu).map((s) => ({ name: gpuName(s.labels), labels: s.labels, points: s.points }));
}

function renderStats(s) {
  const stats = [
    ["GPUs", s.gpus.count],
    ["utilisation avg / max", `${fmt(s.gpus.utilization_pct.avg)} / ${fmt(s.gpus.utilization_pct.max)} %`],
    ["memory used", `${fmt(s.gpus.memory.used_mib)} / ${fmt(s.gpus.memory.total_mib)} MiB`],
    ["hottest", s.gpus.hottest ? `${fmt(s.gpus.hottest.temperature_c)} °C (GPU ${s.gpus.hottest.gpu})` : "–"],
    ["requests/s", fmt(s.requests.rate_per_s)],
    ["error rate", `${fmt(s.requests.error_rate * 100)} %`],
    ["alerts firing / pending", `${s.alerts.firing} / ${s.alerts.pending}`],
    ["nearest exhaustion", s.nearest_exhaustion ? `${fmt(s.nearest_exhaustion.seconds)} s (GPU ${s.nearest_exhaustion.gpu})` : "none"],
  ];
  $("#stats").replaceChildren(...stats.map(([k, v]) => {
    const d = document.createElement("div");
    d.className = "stat";
    d.innerHTML = `<b></b><span class="muted"></span>`;
    d.querySelector("b").textContent = v;
    d.querySelector("span").textContent = k;
    return d;
  }));
  $("#source").textContent = `${s.gpu_source.kind} GPUs`;
  const l = s.requests.latency_ms;
  if (l && l.p50 !== null) {
    latency.push([s.generated_at_ms, l.p50, l.p95, l.p99]);
    while (latency.length > WINDOW_S) latency.shift();
  }
  drawChart($("#latency"), ["p50", "p95", "p99"].map((name, i) => ({
    name, points: latency.map((row) => [row[0], row[i + 1]]),
  })));
}

async function renderForecast(memory) {
  const q = encodeURIComponent('{__name__="DCGM_FI_DEV_FB_USED"}');
  const r = await getJson(`/api/phase4/predictions?match=${q}`);
  const preds = (r.predictions || []).slice().sort((a, b) => byGpu(a.series, b.series));
  // The GPU nearest to running out, else the first one forecast.
  const p = preds.find((x) => x.exhaustion) || preds[0];
  if (!p) {
    $("#forecast-gpu").textContent = r.enabled ? "(waiting for the first fit)" : "(predictor off)";
    drawChart($("#forecast"), []);
    return;
  }
  const name = gpuName(p.series.labels);
  const actual = memory.find((m) => m.name === name);
  const ex = p.exhaustion ? ` – ${p.exhaustion.text}` : "";
  $("#forecast-gpu").textContent = `(${name}, ${p.model}${ex})`;
  const level = (i, side) => p.forecast.map((f) => [f.at_ms, f.intervals[i][side]]);
  const bands = p.levels.map((lv, i) => ({ name: `${lv * 100}%`, color: i === 0 ? "#88c0d0" : "#5e81ac", upper: level(i, 1), lower: level(i, 0) }));
  drawChart($("#forecast"), [
    { name: "actual", points: actual ? actual.points : [], color: "#a3be8c" },
    { name: "forecast", points: p.forecast.map((f) => [f.at_ms, f.value]), color: "#ebcb8b", dashed: true },
  ], bands.reverse());
}

function renderAlerts(r) {
  const body = $("#alerts tbody");
  const rows = r.alerts.map((a) => {
    const tr = document.createElement("tr");
    tr.dataset.id = a.id;
    const labels = Object.entries(a.labels).filter(([k]) => k !== "alertname")
      .map(([k, v]) => `${k}=${v}`).join(" ");
    tr.innerHTML = `<td></td><td></td><td class="labels"></td><td></td><td></td><td></td>`;
    const td = tr.querySelectorAll("td");
    td[0].textContent = a.name;
    td[1].textContent = a.silenced_by ? `${a.state}, silenced` : a.state;
    td[1].className = a.state;
    if (a.silenced_by) td[1].title = `Alertmanager silence ${a.silenced_by.join(", ")}`;
    td[2].textContent = labels;
    td[3].textContent = fmt(a.value);
    td[4].textContent = time(a.active_at_ms);
    if (a.acknowledgement) {
      td[5].textContent = `acknowledged by ${a.acknowledgement.by}`;
    } else {
      const b = document.createElement("button");
      b.className = "ack";
      b.textContent = "Acknowledge";
      b.onclick = () => acknowledge(a.id, b);
      td[5].appendChild(b);
    }
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td colspan="6" class="muted">no active alerts</td>`;
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

async function acknowledge(id, button) {
  button.disabled = true;
  try {
    await getJson(`/api/phase4/alerts/${id}/acknowledge`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ by: $("#who").value || "live page", comment: "acknowledged from the live page" }),
    });
    await refresh();
  } catch (e) {
    button.disabled = false;
    $("#refresh").textContent = `acknowledge failed: ${e.message}`;
    $("#refresh").className = "error";
  }
}

function renderAnomalies(r) {
  const rows = (r.anomalies || []).map((a) => {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td></td><td class="labels"></td><td></td><td></td><td></td><td></td>`;
    const td = tr.querySelectorAll("td");
    td[0].textContent = time(a.last_at_ms);
    td[1].textContent = `${a.series.metric} ${gpuName(a.series.labels)}`;
    td[2].textContent = fmt(a.value);
    td[3].textContent = `${fmt(a.expected_low)} – ${fmt(a.expected_high)}`;
    td[4].textContent = fmt(a.peak_score);
    td[5].textContent = a.detail;
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td colspan="6" class="muted">${r.enabled ? "no anomalies" : "anomaly detector off"}</td>`;
    rows.push(tr);
  }
  $("#anomalies tbody").replaceChildren(...rows);
}

// What alerting rules did (pulse_action): the runner's mode and its last records.
function renderActions(r) {
  $("#actions-mode").textContent = r.off
    ? "no action runner in this role"
    : r.paused ? "paused (kill switch)" : r.dry_run ? "dry run: recorded, not done" : "acting";
  const rows = (r.actions || []).map((a) => {
    const tr = document.createElement("tr");
    tr.dataset.id = String(a.id);
    tr.innerHTML = `<td></td><td></td><td class="labels"></td><td></td><td></td><td></td>`;
    const td = tr.querySelectorAll("td");
    td[0].textContent = time(a.at_ms);
    td[1].textContent = a.rule;
    td[2].textContent = a.target;
    td[3].textContent = a.action.type === "command" ? `command ${a.action.name}`
      : a.action.type === "webhook" ? `webhook ${a.action.url}` : a.action.type;
    td[4].textContent = a.outcome;
    const e = a.effect;
    td[5].textContent = e && e.released_mib !== null && e.released_mib !== undefined
      ? `freed ${fmt(e.released_mib)} MiB (${fmt(e.before_mib)} → ${fmt(e.after_mib)})`
      : a.ack ? `worker: ${a.ack}` : a.webhook ? `HTTP ${a.webhook.status ?? "–"}` : "";
    return tr;
  });
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td colspan="6" class="muted">no actions</td>`;
    rows.push(tr);
  }
  $("#actions tbody").replaceChildren(...rows);
}

let refreshes = 0;
async function refresh() {
  try {
    const [summary, util, memory, alerts, anomalies, actions] = await Promise.all([
      getJson("/api/phase4/dashboard/summary"),
      seriesLines("DCGM_FI_DEV_GPU_UTIL"),
      seriesLines("DCGM_FI_DEV_FB_USED"),
      getJson("/api/phase4/alerts/active"),
      getJson("/api/phase4/anomalies?limit=10"),
      // 404 in `pulse agent`, which runs no actions.
      getJson("/api/phase4/actions?limit=10").catch(() => ({ off: true })),
    ]);
    renderStats(summary);
    drawChart($("#util"), util);
    drawChart($("#memory"), memory);
    await renderForecast(memory);
    renderAlerts(alerts);
    renderAnomalies(anomalies);
    renderActions(actions);
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
    $("#refresh").textContent = `updated ${time(Date.now())}`;
    $("#refresh").className = "muted";
  } catch (e) {
    $("#refresh").textContent = `refresh failed: ${e.message}`;
    $("#refresh").className = "error";
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
