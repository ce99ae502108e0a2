// The maintenance board: polls /api/windows (version 1, docs/board.md) and draws it.
// Every string from a ticket is inserted with textContent, never as HTML; links only for http(s) URLs.
"use strict";

(function () {
  const VERSION = 1;
  const params = new URLSearchParams(window.location.search);
  const channel = window.location.pathname.replace(/^\/board\/?/, "").replace(/\/$/, "");
  const api = "/api/windows" + (channel ? "/" + encodeURIComponent(channel) : "");
  const refreshOverride = Number(params.get("refresh")) || 0;

  let doc = null; // the last document received
  let receivedAt = 0; // Date.now() when it arrived
  let lastOk = null; // its now_label, for "last update"
  let renders = 0;
  let timer = null;

  if (params.get("tv") === "1") {
    document.documentElement.classList.add("tv");
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // Before the first answer (or without one) the page has no catalog: these few in English.
  const FALLBACK = {
    "stale.unreachable": "Data may be out of date: the connector cannot be reached (last update {time})",
    title: "Maintenance board",
  };

  function fmt(key, values) {
    let s = (doc && doc.text && doc.text[key]) || FALLBACK[key] || key;
    for (const name of Object.keys(values || {})) {
      s = s.split("{" + name + "}").join(String(values[name]));
    }
    return s;
  }

  function safeUrl(url) {
    if (typeof url !== "string") return null;
    try {
      const u = new URL(url, window.location.href);
      return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  function ticketLink(w) {
    const href = safeUrl(w.url);
    const a = el(href ? "a" : "span", "number", w.number);
    if (href) {
      a.href = href;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
    }
    return a;
  }

  function details(w) {
    const cis = w.cis && w.cis.length ? w.cis.join(", ") : fmt("cis.none");
    const parts = [cis, w.group || fmt("group.none")];
    return parts.join(" · ");
  }

  function silenceTag(w) {
    return el("span", "silence silence-" + w.silence, fmt("silence." + w.silence));
  }

  function phaseTag(w) {
    return el("span", "phase-tag phase-" + w.phase, fmt("phase." + w.phase));
  }

  // The share of the range [from, to] at instant t, clamped to [0, 1].
  function position(t) {
    const from = Date.parse(doc.range.from);
    const to = Date.parse(doc.range.to);
    const x = (Date.parse(t) - from) / (to - from);
    return Math.min(1, Math.max(0, x));
  }

  function currentNow() {
    return new Date(Date.parse(doc.now) + (Date.now() - receivedAt)).toISOString();
  }

  function listItem(w, when) {
    const li = el("li", "item phase-" + w.phase);
    li.dataset.id = w.id;
    const top = el("div", "item-top");
    top.append(ticketLink(w), el("span", "title", w.title), phaseTag(w));
    const bottom = el("div", "item-bottom");
    bottom.append(el("span", "when", when), el("span", "details", details(w)), silenceTag(w));
    li.append(top, bottom);
    return li;
  }

  function renderLists(byId) {
    const running = document.getElementById("running");
    const starting = document.getElementById("starting");
    document.getElementById("running-title").textContent = fmt("running");
    document.getElementById("starting-title").textContent = fmt("starting");
    running.replaceChildren();
    starting.replaceChildren();
    for (const id of doc.running) {
      const w = byId[id];
      running.append(listItem(w, fmt("until", { time: w.end_label })));
    }
    for (const id of doc.starting) {
      const w = byId[id];
      starting.append(listItem(w, fmt("from", { time: w.start_label })));
    }
    if (!doc.running.length) running.append(el("li", "none", fmt("none")));
    if (!doc.starting.length) starting.append(el("li", "none", fmt("none")));
  }

  function renderAxis() {
    const axis = document.getElementById("axis");
    axis.replaceChildren();
    const width = axis.clientWidth || 1000;
    const hours = doc.ticks.length || 1;
    const perHour = width / hours;
    const every = [1, 2, 3, 6, 12, 24].find((k) => k * perHour >= 70) || 24;
    doc.ticks.forEach((tick, i) => {
      const hour = Number(tick.label.slice(0, 2));
      const labelled = hour % every === 0;
      const mark = el("div", "tick" + (tick.day ? " day" : "") + (labelled ? " labelled" : ""));
      mark.style.left = (position(tick.at) * 100).toFixed(3) + "%";
      if (labelled || (tick.day && i > 0)) {
        mark.append(el("span", "tick-label", tick.day && hour === 0 ? tick.day : tick.label));
      }
      axis.append(mark);
    });
  }

  function renderRow(w) {
    const row = el("div", "row phase-" + w.phase);
    row.dataset.id = w.id;
    row.dataset.number = w.number;
    row.dataset.phase = w.phase;
    const track = el("div", "track");
    const left = position(w.start);
    const right = position(w.bar_end);
    const bar = el("div", "bar phase-" + w.phase);
    bar.style.left = (left * 100).toFixed(3) + "%";
    bar.style.width = (Math.max(right - left, 0.002) * 100).toFixed(3) + "%";
    bar.title = w.number;
    const label = el("div", "label");
    const line1 = el("div", "label-top");
    line1.append(ticketLink(w), el("span", "title", w.title));
    const line2 = el("div", "label-bottom");
    line2.append(
      phaseTag(w),
      el("span", "when", w.start_label + "–" + (w.end_label || "")),
      el("span", "details", details(w)),
      silenceTag(w),
    );
    label.append(line1, line2);
    // The text sits right of the bar; left of it when the bar ends in the right part of the range;
    // over it when the bar spans most of the range.
    let room;
    if (right < 0.6) {
      label.style.left = (right * 100).toFixed(3) + "%";
      room = 1 - right;
    } else if (left > 0.4) {
      label.classList.add("flip");
      label.style.right = ((1 - left) * 100).toFixed(3) + "%";
      room = left;
    } else {
      label.classList.add("inside");
      label.style.left = (left * 100).toFixed(3) + "%";
      room = 1 - left;
    }
    label.style.maxWidth = (room * 100).toFixed(3) + "%";
    track.append(bar, label);
    row.append(track);
    return row;
  }

  function renderTimeline() {
    const rows = document.getElementById("rows");
    rows.replaceChildren();
    for (const group of doc.groups) {
      const g = el("div", "group");
      g.dataset.group = group.name;
      g.append(el("h3", "group-title", group.name));
      for (const w of group.windows) g.append(renderRow(w));
      rows.append(g);
    }
    const empty = document.getElementById("empty");
    empty.hidden = doc.groups.length > 0;
    empty.textContent = fmt("empty", { since: doc.range_label.from, until: doc.range_label.to });
    renderAxis();
    moveNow();
  }

  function moveNow() {
    if (!doc) return;
    const line = document.getElementById("now-line");
    line.hidden = false;
    line.style.left = (position(currentNow()) * 100).toFixed(3) + "%";
    document.getElementById("now-label").textContent = fmt("now");
  }

  function renderHead() {
    const v = doc.view;
    document.documentElement.lang = v.locale;
    const title = v.channel ? fmt("title.channel", { channel: v.channel }) : fmt("title");
    document.getElementById("title").textContent = title;
    document.title = title;
    document.getElementById("asof").textContent = fmt("as_of", { time: doc.now_label });
    document.getElementById("tz").textContent = v.tz_name + " (" + v.timezone + ")";
  }

  function showStale(reasons) {
    const banner = document.getElementById("stale");
    banner.replaceChildren();
    if (!reasons.length) {
      banner.hidden = true;
      document.body.dataset.state = "ok";
      return;
    }
    for (const r of reasons) banner.append(el("p", "", r));
    banner.hidden = false;
    document.body.dataset.state = "stale";
  }

  function render(next) {
    doc = next;
    receivedAt = Date.now();
    lastOk = next.now_label;
    const byId = {};
    for (const g of doc.groups) for (const w of g.windows) byId[w.id] = w;
    renderHead();
    renderLists(byId);
    renderTimeline();
    showStale(doc.health.ok ? [] : doc.health.reasons.map((r) => fmt("stale", { reason: r })));
    renders += 1;
    document.body.dataset.renders = String(renders);
  }

  function unreachable() {
    showStale([fmt("stale.unreachable", { time: lastOk || "-" })]);
    if (!doc) document.getElementById("title").textContent = fmt("title");
  }

  function schedule() {
    const seconds = refreshOverride || (doc && doc.refresh_seconds) || 15;
    clearTimeout(timer);
    timer = setTimeout(poll, Math.max(1, seconds) * 1000);
  }

  async function poll() {
    try {
      const response = await fetch(api, { cache: "no-store", credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const next = await response.json();
      if (next.version !== VERSION) throw new Error("unknown version " + next.version);
      render(next);
    } catch (e) {
      unreachable();
    }
    schedule();
  }

  document.getElementById("title").textContent = "…";
  setInterval(moveNow, 10000);
  window.addEventListener("resize", () => doc && renderAxis());
  poll();
})();
