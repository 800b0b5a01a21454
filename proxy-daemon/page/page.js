// The live page of tau_metric_proxy. Every second it asks the proxy for its
// jobs (/api/jobs) and for the totals of the view shown (/api/values, the
// node's, or one job's with ?job=ID when the address ends in #job=ID), and
// keeps the last minutes of them here, in the browser: the proxy keeps no
// history. Rates are differences of totals over the proxy's own clock.
// Every name shown comes from collectors, so text is only ever set as text.
"use strict";

const PERIOD_MS = 1000;
const KEEP = 300; // samples: five minutes at one a second
const RATE_OVER = 10; // seconds the "per second" column averages over
const CHART_OVER = 3; // seconds each chart point averages over
const TOP_TABLE = 12;
const TOP_CHART = 5;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"];
const KINDS = ["mpi", "syscalls"];
const QUANTITY_UNIT = { time: "s/s", hits: "calls/s", size: "B/s" };

const $ = (id) => document.getElementById(id);

// Everything seen since the page opened, as /api/values sent it plus
// `seen`, when this page received it: [{time, seen, mpi: {name: totals}, ...}].
// Charts are drawn against `seen` (the viewer's clock), rates computed
// over `time` (the proxy's).
let samples = [];
const charts = {}; // kind -> {plot, names}

// The job shown, from the address (#job=ID), or null for the node.
function viewedJob() {
  const m = location.hash.match(/^#job=(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

function quantity() {
  return $("quantity").value;
}

// ---- numbers ----

function fmtCount(v) {
  if (v == null) return "–";
  const units = ["", "k", "M", "G", "T"];
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return (i === 0 ? Math.round(v * 100) / 100 : v.toFixed(v < 10 ? 2 : 1)) + units[i];
}

function fmtBytes(v) {
  if (v == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? Math.round(v) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
}

function fmtSeconds(v) {
  if (v == null) return "–";
  const a = Math.abs(v);
  if (a === 0) return "0 s";
  if (a < 1e-3) return (v * 1e6).toFixed(1) + " µs";
  if (a < 1) return (v * 1e3).toFixed(1) + " ms";
  return v.toFixed(a < 10 ? 2 : 1) + " s";
}

function fmtRate(q, v) {
  if (v == null) return "–";
  if (q === "time") return v.toFixed(3);
  return q === "size" ? fmtBytes(v) + "/s" : fmtCount(v) + "/s";
}

// ---- history ----

// The rate of `name`'s quantity `q` between samples a and b, or null.
function rate(kind, name, q, a, b) {
  const x = a[kind][name], y = b[kind][name];
  const dt = b.time - a.time;
  if (!y || y[q] == null || dt <= 0) return null;
  const before = x && x[q] != null ? x[q] : 0;
  return Math.max(0, (y[q] - before) / dt);
}

// The names of `kind` with the most time in the last sample.
function topNames(kind, n) {
  const last = samples[samples.length - 1][kind];
  return Object.keys(last)
    .sort((a, b) => (last[b].time || 0) - (last[a].time || 0) || (last[b].hits || 0) - (last[a].hits || 0) || a.localeCompare(b))
    .slice(0, n);
}

// ---- tables ----

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
}

function renderTable(kind) {
  const q = quantity();
  const last = samples[samples.length - 1];
  let first = samples.length - 1;
  while (first > 0 && last.time - samples[first - 1].time <= RATE_OVER) first--;
  const body = $(kind).tBodies[0];
  body.replaceChildren();
  const names = topNames(kind, TOP_TABLE);
  for (const name of names) {
    const t = last[kind][name];
    const row = body.insertRow();
    cell(row, name, "name");
    cell(row, fmtCount(t.hits), "num");
    cell(row, fmtBytes(t.size), "num");
    cell(row, fmtSeconds(t.time), "num");
    cell(row, first < samples.length - 1 ? fmtRate(q, rate(kind, name, q, samples[first], last)) : "–", "num");
  }
  if (names.length === 0) {
    const row = body.insertRow();
    cell(row, kind === "mpi" ? "no MPI calls counted yet" : "no system calls counted yet", "empty");
    row.cells[0].colSpan = 5;
  }
  $(kind).tHead.rows[0].cells[4].textContent = QUANTITY_UNIT[q];
}

// ---- charts ----

// Each point is the rate over the samples of the CHART_OVER seconds before
// it (by the proxy's clock), as Prometheus' rate() over a short range.
function chartData(kind, names, q) {
  const xs = [], ys = names.map(() => []);
  let j = 0;
  for (let i = 1; i < samples.length; i++) {
    while (samples[i].time - samples[j].time > CHART_OVER && j < i - 1) j++;
    xs.push(samples[i].seen);
    names.forEach((n, k) => ys[k].push(rate(kind, n, q, samples[j], samples[i])));
  }
  return [xs, ...ys];
}

// Tells whoever looks (a person, a test) how many points the chart drew.
function countDrawn(u) {
  let n = 0;
  for (let s = 1; s < u.data.length; s++) {
    for (const v of u.data[s]) if (v != null) n++;
  }
  u.root.parentElement.dataset.points = String(n);
}

function makeChart(kind, names, q) {
  const el = $(kind + "-chart");
  el.replaceChildren();
  const unit = QUANTITY_UNIT[q];
  const value = q === "time" ? (v) => String(+v.toPrecision(3)) : q === "size" ? (v) => fmtBytes(v) + "/s" : (v) => fmtCount(v) + "/s";
  const plot = new uPlot({
    width: Math.max(200, el.clientWidth),
    height: 220,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [
      { stroke: "#555", grid: { stroke: "#eee" } },
      { stroke: "#555", grid: { stroke: "#eee" }, size: 70, label: unit, values: (u, vs) => vs.map((v) => value(v)) },
    ],
    series: [
      { value: (u, v) => (v == null ? "–" : new Date(v * 1000).toLocaleTimeString()) },
      ...names.map((n, i) => ({ label: n, stroke: COLORS[i], width: 1.5, value: (u, v) => (v == null ? "–" : value(v)) })),
    ],
    legend: { live: false },
    hooks: { draw: [countDrawn] },
  }, chartData(kind, names, q), el);
  charts[kind] = { plot, names, q };
}

function renderChart(kind) {
  const q = quantity();
  const names = topNames(kind, TOP_CHART);
  const c = charts[kind];
  if (!c || c.q !== q || c.names.join("\n") !== names.join("\n")) {
    if (c) c.plot.destroy();
    makeChart(kind, names, q);
  } else {
    c.plot.setData(chartData(kind, names, q));
  }
}

// ---- jobs ----

function fmtTime(t) {
  return t == null ? "–" : new Date(t * 1000).toLocaleTimeString();
}

function fmtDuration(secs) {
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

// The jobs table: newest first; each id links to its view.
function renderJobs(answer) {
  const body = $("jobs").tBodies[0];
  body.replaceChildren();
  const shown = viewedJob();
  const jobs = answer.jobs.slice().reverse();
  for (const j of jobs) {
    const row = body.insertRow();
    if (j.id === shown) row.className = "selected";
    const link = document.createElement("a");
    link.href = "#job=" + encodeURIComponent(j.id);
    link.textContent = j.id;
    link.className = "job";
    row.insertCell().appendChild(link);
    const wall = (j.end ?? answer.time) - j.start;
    cell(row, j.end == null ? "running" : "finished", j.end == null ? "running" : "finished");
    cell(row, String(j.ranks.length || "–"), "num");
    cell(row, fmtTime(j.start), "num");
    cell(row, fmtDuration(wall), "num");
    const share = j.ranks.length && wall > 0 ? j.mpi_time / (j.ranks.length * wall) : null;
    cell(row, share == null ? "–" : (100 * share).toFixed(1) + " %", "num");
    cell(row, j.commands.join(" "), "commands");
  }
  if (jobs.length === 0) {
    const row = body.insertRow();
    cell(row, "no jobs on this node (yet)", "empty");
    row.cells[0].colSpan = 7;
  }
}

// ---- polling ----

function render() {
  for (const kind of KINDS) {
    renderTable(kind);
    renderChart(kind);
  }
  const span = samples.length > 1 ? samples[samples.length - 1].seen - samples[0].seen : 0;
  $("window").textContent = Math.round(span) + " s";
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(r.status === 503 ? (await r.text()).trim() : "HTTP " + r.status);
  return r.json();
}

let timer = null;

async function poll() {
  clearTimeout(timer);
  const job = viewedJob();
  try {
    const [jobs, v] = await Promise.all([
      getJson("/api/jobs"),
      getJson("/api/values" + (job == null ? "" : "?job=" + encodeURIComponent(job))),
    ]);
    if (job !== viewedJob()) return; // the view changed meanwhile
    renderJobs(jobs);
    if (v == null) {
      $("status").textContent = "the proxy keeps no job " + job + " (any more): its history here stays as it was";
      $("status").classList.add("down");
    } else {
      v.seen = Date.now() / 1000;
      samples.push(v);
      if (samples.length > KEEP) samples.shift();
      $("node").textContent = v.node ? "on " + v.node : "";
      document.title = (job == null ? "" : "job " + job + " · ") + "tau_metric_proxy" + (v.node ? " on " + v.node : "");
      $("status").textContent = v.collectors + " collectors connected to the node · " + v.series + " series · updated " +
        fmtTime(v.time);
      $("status").classList.remove("down");
      render();
    }
  } catch (e) {
    $("status").textContent = "cannot reach the proxy (" + e.message + "): retrying every second";
    $("status").classList.add("down");
  }
  timer = setTimeout(poll, PERIOD_MS);
}

// A new view starts a new history.
function showView() {
  const job = viewedJob();
  samples = [];
  for (const kind of KINDS) {
    if (charts[kind]) charts[kind].plot.destroy();
    delete charts[kind];
    $(kind + "-chart").replaceChildren();
    $(kind + "-chart").dataset.points = "0";
    $(kind).tBodies[0].replaceChildren();
  }
  $("crumb").replaceChildren();
  if (job == null) {
    $("crumb").textContent = "node-wide";
  } else {
    const back = document.createElement("a");
    back.href = "#";
    back.textContent = "node-wide";
    $("crumb").append("job ", Object.assign(document.createElement("strong"), { textContent: job }), " · ", back);
  }
  for (const el of document.querySelectorAll(".of-view")) el.textContent = job == null ? "" : " of job " + job;
  poll();
}

window.addEventListener("hashchange", showView);
$("quantity").addEventListener("change", () => samples.length && render());
new ResizeObserver(() => {
  for (const kind of KINDS) {
    const c = charts[kind];
    if (c) c.plot.setSize({ width: Math.max(200, $(kind + "-chart").clientWidth), height: 220 });
  }
}).observe(document.querySelector(".pair"));
showView();
