// The Helio dashboard: reads the scheduler's snapshots from /v1/dashboard/events
// (server-sent events, read with fetch so that a token can go in a header) and redraws the
// page from each. Every value from the scheduler is set as text, never as markup.
"use strict";

const TOKEN_KEY = "helio.dashboard.token";
const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (className) e.className = className;
  return e;
}

function num(n) {
  return Number(n).toLocaleString("en-US");
}

// Micro-credits as credits: exact, with two to six decimals.
function credits(micro) {
  const whole = Math.floor(micro / 1e6);
  let frac = String(micro % 1e6).padStart(6, "0").replace(/0+$/, "");
  if (frac.length < 2) frac = frac.padEnd(2, "0");
  return num(whole) + "." + frac;
}

function fuel(n) {
  const units = [[1e15, "Pfuel"], [1e12, "Tfuel"], [1e9, "Gfuel"], [1e6, "Mfuel"], [1e3, "kfuel"]];
  for (const [size, unit] of units) {
    if (n >= size) return (n / size).toFixed(n >= size * 100 ? 0 : 1) + " " + unit;
  }
  return n + " fuel";
}

function hours(ms) {
  const h = ms / 3.6e6;
  if (h >= 100) return num(Math.round(h)) + " h";
  if (h >= 1) return h.toFixed(1) + " h";
  const min = ms / 6e4;
  if (min >= 1) return min.toFixed(1) + " min";
  return (ms / 1000).toFixed(1) + " s";
}

// How long before `now` (both scheduler clock) `then` was, in words.
function ago(now, then) {
  const s = Math.max(0, Math.round((now - then) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function shortId(id) {
  return id.length > 12 ? id.slice(0, 12) + "…" : id;
}

function bar(parts, total, label) {
  const b = el("div", null, "bar");
  b.setAttribute("role", "img");
  b.setAttribute("aria-label", label);
  for (const [n, cls] of parts) {
    if (total > 0 && n > 0) {
      const s = el("span", null, cls);
      s.style.width = (100 * n / total).toFixed(2) + "%";
      b.appendChild(s);
    }
  }
  return b;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

// A small chart of `values` (no axes: the label says what it shows): one bar per value, or
// a line through them, scaled to `top` (charts meant to be compared share it) or else to the
// largest value. data-total and data-last hold the figures.
function chart(values, label, kind, width, height, top) {
  const svg = svgEl("svg", {
    viewBox: "0 0 " + width + " " + height, width: width, height: height,
    role: "img", "aria-label": label, class: "chart-" + kind,
    // Bars stretch to the width they are given; a line keeps its shape.
    preserveAspectRatio: kind === "bars" ? "none" : "xMidYMid meet",
  });
  svg.appendChild(svgEl("title", {})).textContent = label;
  top = Math.max(1, top || 0, ...values);
  const y = (v) => (height - 1 - (height - 2) * v / top).toFixed(1);
  if (kind === "bars") {
    const w = width / Math.max(1, values.length);
    values.forEach((v, i) => {
      if (v > 0) {
        const r = svgEl("rect", { x: (i * w).toFixed(1), y: y(v), width: Math.max(1, w - 1).toFixed(1), height: (height - 1 - y(v)).toFixed(1) });
        r.dataset.count = String(v);
        svg.appendChild(r);
      }
    });
  } else {
    const step = width / Math.max(1, values.length - 1);
    const points = values.map((v, i) => (i * step).toFixed(1) + "," + y(v)).join(" ");
    svg.appendChild(svgEl("polyline", { points: points, fill: "none" }));
  }
  svg.dataset.total = String(values.reduce((a, b) => a + b, 0));
  svg.dataset.last = String(values.length ? values[values.length - 1] : 0);
  return svg;
}

function fill(tableId, rows, emptyId) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(...rows);
  $(emptyId).hidden = rows.length > 0;
  $(tableId).hidden = rows.length === 0;
}

function renderPulse(s) {
  const online = Object.values(s.runners_online).reduce((a, b) => a + b, 0);
  $("runners-online").textContent = num(online);
  $("runners-by-tier").textContent = Object.entries(s.runners_online)
    .filter(([, n]) => n > 0)
    .map(([tier, n]) => tier + " " + n)
    .join(" · ") || "of " + num(s.runners_known) + " known";
  $("owners-known").textContent = num(s.owners_known) + " owner" + (s.owners_known === 1 ? "" : "s");
  $("tasks-per-second").textContent =
    s.tasks_per_second === null ? "–" : s.tasks_per_second.toFixed(s.tasks_per_second < 10 ? 1 : 0);
  const t = s.tasks;
  $("queue").textContent = num(t.open + t.deciding);
  $("queue-detail").textContent =
    num(t.open - t.running) + " waiting · " + num(t.running) + " running · " + num(t.leases) + " leases";
  $("accepted").textContent = num(t.succeeded);
  $("failed").textContent = num(t.failed);
  $("disputed").textContent = num(t.disputed);
  $("deciding").textContent = num(t.deciding);
  const perMinute = s.accepted_per_minute;
  const sum = perMinute.reduce((a, b) => a + b, 0);
  $("accepted-chart").replaceChildren(chart(perMinute,
    num(sum) + " tasks accepted in the last hour, minute by minute", "bars", 600, 60));
}

function renderImpact(s) {
  const i = s.impact;
  $("impact-hours").textContent = hours(i.compute_ms);
  $("impact-results").textContent = num(i.results);
  $("impact-fuel").textContent = fuel(i.fuel);
  $("impact-tasks").textContent = num(s.tasks.succeeded + s.tasks.failed);
  $("impact-credits").textContent = credits(i.micro_credits);
}

function renderBatches(s) {
  const form = $("token-form");
  if (s.batches === null || s.batches === undefined) {
    form.hidden = false;
    $("batches").hidden = true;
    $("batches-empty").hidden = true;
    return;
  }
  form.hidden = true;
  const rows = s.batches.map((b) => {
    const tr = el("tr");
    tr.dataset.batch = b.batch;
    const done = b.succeeded + b.failed;
    const finished = b.done;
    const name = el("td");
    name.append(el("div", b.name), el("div", shortId(b.batch) + " · " + b.submitted_by, "sub id"));
    const progress = el("td", null, "progress");
    progress.appendChild(bar(
      [[b.succeeded, "ok"], [b.failed, "bad"], [b.running + b.deciding, "run"]],
      b.tasks,
      done + " of " + b.tasks + " tasks accepted",
    ));
    const count = el("td", num(done) + " / " + num(b.tasks), "num done");
    count.dataset.done = String(done);
    count.dataset.tasks = String(b.tasks);
    const state = el("td", finished ? "done" : (b.failed > 0 ? "running, " + b.failed + " failed" : "running"),
      "state " + (finished ? "state-done" : "state-running"));
    state.dataset.state = finished ? "done" : "running";
    const paid = el("td", credits(b.micro_credits), "num credits");
    const trend = el("td", null, "trend");
    trend.appendChild(chart(b.progress, "tasks accepted since it was submitted", "line", 120, 24));
    tr.append(name, progress, count, state, trend, paid);
    return tr;
  });
  fill("batches", rows, "batches-empty");
}

function renderOwners(s) {
  const top = s.owners.length ? Math.max(...s.owners.map((o) => o.micro_credits)) : 0;
  const trends = s.credit_trends || {};
  const highest = Math.max(0, ...Object.values(trends).flat());
  const rows = s.owners.map((o, i) => {
    const tr = el("tr");
    tr.dataset.owner = o.key;
    const share = el("td");
    const b = bar([[o.micro_credits, "ok"]], top, o.key + "'s credits");
    b.classList.add("share");
    share.appendChild(b);
    const c = el("td", credits(o.micro_credits), "num credits");
    c.dataset.microCredits = String(o.micro_credits);
    const trend = el("td", null, "trend");
    const points = trends[o.key];
    if (points) trend.appendChild(chart(points, o.key + "'s credits over time", "line", 120, 24, highest));
    tr.append(el("td", i + 1, "num"), el("td", o.key), share, trend, c, el("td", num(o.tasks), "num"));
    return tr;
  });
  fill("owners", rows, "owners-empty");
}

function renderRunners(s) {
  const rows = s.runners.map((r) => {
    const tr = el("tr");
    tr.dataset.runner = r.id;
    const id = el("td", null, "dot " + (r.online ? "online" : "offline"));
    id.title = r.online ? "online" : "offline";
    id.append(el("span", shortId(r.id), "id"));
    if (r.flagged) id.append(" ", el("span", "flagged", "flag"));
    if (r.established) {
      const est = el("span", "established", "established");
      est.title = "verified often enough that its result alone meets the grid's target error";
      id.append(" ", est);
    }
    if (r.online && !r.warm) {
      const cold = el("span", r.checks_failed ? "failed check" : "checking", "cold");
      cold.title = r.checks_failed
        ? `failed ${r.checks_failed} health check(s) in a row: no tasks until it passes one`
        : "new, restarted or back from offline: running its health check before any task";
      id.append(" ", cold);
    }
    tr.append(
      id,
      el("td", r.owner),
      el("td", r.tier),
      el("td", r.slots, "num"),
      el("td", ago(s.at_ms, r.last_seen_ms), "seen"),
      el("td", num(r.agreements), "num"),
      el("td", num(r.disagreements), "num"),
      el("td", num(r.verified), "num verified"),
    );
    return tr;
  });
  fill("runners", rows, "runners-empty");
}

function renderFlagged(s) {
  const items = s.flagged.map((r) => {
    const li = el("li");
    li.dataset.runner = r.id;
    li.append(el("span", shortId(r.id), "id flag"), " of " + r.owner + ": " +
      r.disagreements + " disagreeing of " + (r.agreements + r.disagreements) + " results");
    return li;
  });
  $("flagged").replaceChildren(...items);
  $("flagged-empty").hidden = items.length > 0;
}

function render(s) {
  renderPulse(s);
  renderImpact(s);
  renderBatches(s);
  renderOwners(s);
  renderRunners(s);
  renderFlagged(s);
  $("as-of").textContent = "as of " + new Date(s.at_ms).toLocaleTimeString();
}

function setStatus(state, text) {
  const st = $("status");
  st.dataset.state = state;
  st.textContent = text;
}

// Reads server-sent events from a fetch response body, calling `onEvent(type, data)`.
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(type, data.join("\n"));
    }
  }
}

let retry = 0;
let current = null;

async function connect() {
  const token = localStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const controller = new AbortController();
  current = controller;
  try {
    const response = await fetch("/v1/dashboard/events", {
      headers, cache: "no-store", signal: controller.signal,
    });
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      localStorage.removeItem(TOKEN_KEY);
      $("token-error").textContent = "That token was refused: " + (body.error || response.status);
      setTimeout(connect, 0);
      return;
    }
    if (!response.ok) throw new Error("HTTP " + response.status);
    await readEvents(response, (type, data) => {
      if (type !== "snapshot") return;
      retry = 0;
      setStatus("live", "live");
      render(JSON.parse(data));
    });
    throw new Error("the scheduler ended the stream");
  } catch (e) {
    if (controller.signal.aborted) return;
    retry += 1;
    const wait = Math.min(10000, 500 * 2 ** Math.min(retry, 5));
    setStatus("reconnecting", "scheduler unreachable, trying again in " + Math.round(wait / 1000) + " s");
    setTimeout(connect, wait);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    localStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    $("token-error").textContent = "";
    if (current) current.abort();
    connect();
  });
  connect();
});
