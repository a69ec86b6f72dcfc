// clickrec's built-in dashboard: asks for an admin key, polls /v1/dashboard/data and draws
// its charts as SVG. No library, no other host, no inline code (the page's CSP forbids it);
// text from the server is only ever set as textContent.
"use strict";

const KEY = "clickrec.dashboard.key";
const POLL_MS = 5000;
const SVG = "http://www.w3.org/2000/svg";
const H = 200;  // the chart's height in pixels (app.css); its width is the card's
const PAD = { left: 56, right: 14, top: 12, bottom: 26 };
const MIN_SPAN = 20;  // seconds: a short history is drawn across the chart, not as a dot
// Replay figures (models trained since the replay), else a holdout's (older models).
const MODEL_METRICS = ["mrr@20", "hr@20", "mrr@10", "hr@10", "ndcg@10", "precision@10", "coverage@20"];

const $ = (id) => document.getElementById(id);

const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const fmt = {
  count: (v) => whole.format(v),
  rate: (v) => number.format(v),
  ms: (v) => (v === 0 ? "0" : v < 1 ? v.toFixed(2) : number.format(v)),
  percent: (v) => (v === 0 ? "0%" : `${(100 * v).toFixed(v < 0.1 ? 2 : 1)}%`),
  metric: (v) => v.toFixed(4),
};

// -- the key ---------------------------------------------------------------------------------
function keyFromFragment() {
  // #key=... lets a script open the page signed in; the fragment never reaches the server.
  const params = new URLSearchParams(window.location.hash.slice(1));
  const key = params.get("key");
  if (key) {
    sessionStorage.setItem(KEY, key);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

function showForm(message) {
  $("board").hidden = true;
  $("sign-out").hidden = true;
  $("key-form").hidden = false;
  $("key-error").hidden = !message;
  $("key-error").textContent = message || "";
  setStatus("not connected");
  $("key").focus();
}

function showBoard() {
  $("key-form").hidden = true;
  $("board").hidden = false;
  $("sign-out").hidden = false;
}

function setStatus(text) {
  $("status").textContent = text;
}

// -- polling ---------------------------------------------------------------------------------
let timer = null;
let busy = false;

async function poll() {
  if (busy) return;
  clearTimeout(timer);
  const key = sessionStorage.getItem(KEY);
  if (!key) {
    showForm();
    return;
  }
  busy = true;
  try {
    if (!document.hidden) {
      const response = await fetch("/v1/dashboard/data", {
        headers: { Authorization: `Bearer ${key}` },
        cache: "no-store",
        credentials: "omit",
      });
      if (response.status === 401 || response.status === 403) {
        sessionStorage.removeItem(KEY);
        showForm(response.status === 403 ? "That key is not an admin key." : "That key was not accepted.");
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      showBoard();
      render(await response.json());
    }
  } catch (error) {
    setStatus(`connection problem (${error.message}); retrying`);
  } finally {
    busy = false;
  }
  timer = setTimeout(poll, POLL_MS);
}

// -- rendering -------------------------------------------------------------------------------
let shown = null;  // the last data drawn, to redraw at a new width

function render(data) {
  shown = data;
  const served = data.models.find((m) => m.served);
  const time = new Date(data.at * 1000).toLocaleTimeString();
  const model = served ? `serving ${served.version}` : "serving the trending fallback (no model)";
  setStatus(`updated ${time} · ${model} · up since ${new Date(data.started_at * 1000).toLocaleString()}`);

  chart("events", [data.events_per_minute], fmt.rate);
  figure("events", last(data.events_per_minute), fmt.rate, "/min");

  chart("latency", data.latency_ms, fmt.ms);
  const p = data.latency_ms.map((line) => `${line.name} ${show(last(line), fmt.ms)}`);
  $("figure-latency").textContent = p.length ? p.join(" · ") : "–";

  chart("ctr", [data.ctr], fmt.percent);
  const t = data.totals;
  $("figure-ctr").textContent = t.ctr === null
    ? "no recommendations served yet"
    : `${fmt.percent(t.ctr)} (${fmt.count(t.clicks)} clicks / ${fmt.count(t.served)} served)`;

  chart("lag", data.consumer_lag, fmt.count);
  $("figure-lag").textContent = data.consumer_lag
    .map((line) => `${line.name} ${show(last(line), fmt.count)}`)
    .join(" · ") || "–";

  chart("dead", [data.dead_letters], fmt.count);
  figure("dead", last(data.dead_letters), fmt.count, "");

  trending(data.trending);
  models(data.models);
}

function last(line) {
  for (let i = line.v.length - 1; i >= 0; i--) if (line.v[i] !== null) return line.v[i];
  return null;
}

function show(value, format) {
  return value === null ? "–" : format(value);
}

function figure(name, value, format, unit) {
  $(`figure-${name}`).textContent = value === null ? "–" : `${format(value)}${unit ? ` ${unit}` : ""}`;
}

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function tickStep(max, integer) {
  // A round step (1, 2, 2.5 or 5 times a power of ten; whole numbers for counts) such
  // that four steps reach max.
  const want = max > 0 ? max / 4 : 0.25;
  const power = 10 ** Math.floor(Math.log10(want));
  const steps = integer ? [1, 2, 5, 10] : [1, 2, 2.5, 5, 10];
  const step = steps.map((m) => m * power).find((s) => s >= want) ?? 10 * power;
  return integer ? Math.max(1, Math.round(step)) : step;
}

function chart(name, lines, format) {
  const svg = $(`chart-${name}`);
  svg.replaceChildren();
  const W = Math.max(240, Math.round(svg.getBoundingClientRect().width) || 640);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const legend = $(`legend-${name}`);
  legend.replaceChildren();
  const values = lines.flatMap((line) => line.v.filter((v) => v !== null));
  const times = lines.flatMap((line) => line.t);
  if (values.length === 0) {
    svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "no data yet"));
    svg.setAttribute("data-points", "0");
    return;
  }
  let t1 = Math.max(...times);
  let t0 = Math.min(...times);
  if (t1 - t0 < MIN_SPAN) t0 = t1 - MIN_SPAN;
  const step = tickStep(Math.max(...values), format === fmt.count);
  const top = 4 * step;
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / top) * (H - PAD.top - PAD.bottom);

  for (let i = 0; i <= 4; i++) {
    const v = step * i;
    svg.append(el("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(el("text", { x: PAD.left - 8, y: y(v) + 4, "text-anchor": "end", class: "axis" }, format(v)));
  }
  const clock = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  svg.append(el("text", { x: PAD.left, y: H - 6, "text-anchor": "start", class: "axis" }, clock(t0)));
  svg.append(el("text", { x: (PAD.left + W - PAD.right) / 2, y: H - 6, "text-anchor": "middle", class: "axis" }, clock((t0 + t1) / 2)));
  svg.append(el("text", { x: W - PAD.right, y: H - 6, "text-anchor": "end", class: "axis" }, clock(t1)));

  let drawn = 0;
  lines.forEach((line, i) => {
    const colour = `s${i % 4}`;
    let segment = [];
    const flush = () => {
      if (segment.length === 1) {
        const [px, py] = segment[0];
        svg.append(el("circle", { cx: px, cy: py, r: 3, class: `dot ${colour}` }));
      } else if (segment.length > 1) {
        const points = segment.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ");
        svg.append(el("polyline", { points, class: `line ${colour}` }));
      }
      segment = [];
    };
    line.v.forEach((v, k) => {
      if (v === null) {
        flush();
        return;
      }
      segment.push([x(line.t[k]), y(v)]);
      drawn += 1;
    });
    flush();
    if (lines.length > 1) {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = `swatch ${colour}`;
      item.append(swatch, line.name);
      legend.append(item);
    }
  });
  svg.setAttribute("data-points", String(drawn));
}

function trending(items) {
  const list = $("trending");
  list.replaceChildren();
  for (const item of items) {
    const li = document.createElement("li");
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = item.title || item.item_id;
    title.title = item.item_id;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = item.score.toFixed(2);
    li.append(title, score);
    list.append(li);
  }
  if (items.length === 0) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "nothing read yet";
    list.append(li);
  }
  list.setAttribute("data-points", String(items.length));
}

function models(rows) {
  const present = new Set(rows.flatMap((m) => Object.keys(m.metrics)));
  let names = MODEL_METRICS.filter((n) => present.has(n));
  if (names.length === 0) names = [...present].sort().slice(0, 5);
  const head = $("models-head");
  head.replaceChildren();
  for (const label of ["version", "created", "recipe", ...names]) {
    const th = document.createElement("th");
    th.textContent = label;
    if (names.includes(label)) th.className = "num";
    head.append(th);
  }
  const body = $("models-body");
  body.replaceChildren();
  for (const m of rows) {
    const tr = document.createElement("tr");
    const version = document.createElement("td");
    version.textContent = m.version;
    for (const [flag, text] of [[m.live, "live"], [m.served, "served here"]]) {
      if (!flag) continue;
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = text;
      version.append(badge);
    }
    tr.append(version);
    const cells = [new Date(m.created_at * 1000).toLocaleString(), m.recipe];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    for (const n of names) {
      const td = document.createElement("td");
      td.className = "num";
      td.textContent = n in m.metrics ? fmt.metric(m.metrics[n]) : "–";
      tr.append(td);
    }
    body.append(tr);
  }
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 3 + names.length;
    td.className = "muted";
    td.textContent = "no model trained yet: recommendations come from the trending fallback";
    tr.append(td);
    body.append(tr);
  }
  $("models").setAttribute("data-points", String(rows.length));
}

// -- start -----------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  keyFromFragment();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    $("key").value = "";
    poll();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    clearTimeout(timer);
    showForm();
  });
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => shown && render(shown), 150);
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll();
  });
  poll();
});
