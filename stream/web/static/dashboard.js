// tweetwatch dashboard: plain JS + SVG, no library, no network beyond this server's API.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const BUCKET_MS = { minute: 60e3, hour: 3600e3, day: 86400e3 };
const MAX_ENTITIES = 12;
const MIN_BUCKETS = 12;
const W = 600, H = 170, PAD = { l: 34, r: 34, t: 14, b: 20 };

const $ = (id) => document.getElementById(id);
const seenAlerts = new Set();

function el(tag, attrs = {}, text) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(url) {
  const res = await fetch(url);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

const pct = (x) => (x * 100).toFixed(0) + "%";
const fmtTime = (iso, bucket) => {
  const d = new Date(iso);
  if (bucket === "day") return d.toLocaleDateString();
  return d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit",
                                minute: "2-digit" });
};

function chooseBucket(entities) {
  const choice = $("bucket").value;
  if (choice !== "auto") return choice;
  if (!entities.length) return "hour";
  const first = Math.min(...entities.map((e) => Date.parse(e.first_seen)));
  const last = Math.max(...entities.map((e) => Date.parse(e.last_seen)));
  const span = last - first;
  if (span <= 3 * 3600e3) return "minute";
  if (span <= 4 * 86400e3) return "hour";
  return "day";
}

// One time axis for every chart, so that the cards can be compared at a glance.
function sharedDomain(histories, bucket) {
  const step = BUCKET_MS[bucket];
  const times = histories.flatMap((h) => [
    ...h.points.map((p) => Date.parse(p.start)),
    ...h.alerts.map((a) => Date.parse(a.window_end))]);
  if (!times.length) return null;
  const x1 = Math.max(...times) + step;
  // At least MIN_BUCKETS wide, so that a lone bucket is a bar and not the whole chart.
  return [Math.min(...times, x1 - MIN_BUCKETS * step), x1];
}

function drawChart(history, bucket, domain) {
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, class: "chart",
                              "data-points": history.points.length });
  const pts = history.points;
  if (!pts.length) {
    svg.append(el("svg:text", { x: W / 2, y: H / 2, "text-anchor": "middle" },
                  "no mentions in this period"));
    return svg;
  }
  const step = BUCKET_MS[bucket];
  const times = pts.map((p) => Date.parse(p.start));
  const [x0, x1] = domain;
  const maxN = Math.max(...pts.map((p) => p.mentions));
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  const x = (t) => PAD.l + ((t - x0) / (x1 - x0)) * iw;
  const yN = (n) => PAD.t + ih - (n / maxN) * ih;
  const yS = (s) => PAD.t + ih - s * ih;
  const bw = Math.max(1.5, (step / (x1 - x0)) * iw - 1);

  svg.append(el("svg:line", { x1: PAD.l, x2: W - PAD.r, y1: PAD.t + ih, y2: PAD.t + ih,
                              class: "axis" }));
  svg.append(el("svg:text", { x: PAD.l - 4, y: PAD.t + 8, "text-anchor": "end" }, maxN));
  svg.append(el("svg:text", { x: PAD.l - 4, y: PAD.t + ih, "text-anchor": "end" }, "0"));
  svg.append(el("svg:text", { x: W - PAD.r + 4, y: PAD.t + 8, fill: "#c0392b" }, "100%"));
  svg.append(el("svg:text", { x: W - PAD.r + 4, y: PAD.t + ih }, "0%"));
  svg.append(el("svg:text", { x: PAD.l, y: H - 4 }, fmtTime(new Date(x0).toISOString(), bucket)));
  svg.append(el("svg:text", { x: W - PAD.r, y: H - 4, "text-anchor": "end" },
                fmtTime(new Date(x1 - step).toISOString(), bucket)));

  const line = [];
  pts.forEach((p, i) => {
    const bx = x(times[i]);
    const bar = el("svg:rect", { x: bx, y: yN(p.mentions), width: bw,
                                 height: PAD.t + ih - yN(p.mentions), class: "bar",
                                 "data-start": p.start });
    bar.append(el("svg:title", {}, `${fmtTime(p.start, bucket)}: ${p.mentions} mentions, ` +
                  `${p.negative} negative (${pct(p.negative_share)})`));
    bar.addEventListener("click", () => {
      svg.querySelectorAll(".bar.selected").forEach((b) => b.classList.remove("selected"));
      bar.classList.add("selected");
      showMentions(history, p.start, new Date(times[i] + step).toISOString());
    });
    svg.append(bar);
    line.push(`${bx + bw / 2},${yS(p.negative_share)}`);
  });
  svg.append(el("svg:polyline", { points: line.join(" "), class: "share" }));
  pts.forEach((p, i) => {
    const dot = el("svg:circle", { cx: x(times[i]) + bw / 2, cy: yS(p.negative_share), r: 3,
                                   class: "point", "data-start": p.start });
    dot.append(el("svg:title", {}, `negative share ${pct(p.negative_share)}`));
    dot.addEventListener("click", () =>
      showMentions(history, p.start, new Date(times[i] + step).toISOString(), "negative"));
    svg.append(dot);
  });
  history.alerts.forEach((a) => {
    const ax = x(Date.parse(a.window_end));
    const m = el("svg:path", { d: `M${ax - 5},${PAD.t - 12} h10 l-5,9 z`, class: "marker",
                               "data-alert-id": a.alert_id });
    m.append(el("svg:title", {}, `alert: ${a.text}`));
    m.addEventListener("click", () => showAlert(a.alert_id));
    svg.append(m);
  });
  return svg;
}

function entityCard(entity) {
  const card = el("article", { class: entity.watched ? "card watched" : "card",
                               "data-entity-key": entity.entity_key });
  const head = el("h3", {}, (entity.watched ? "★ " : "") + entity.entity);
  const change = entity.negative_share_change;
  const stats = el("span", { class: "stats" },
    `${entity.type} · ${entity.mentions} mentions · ${pct(entity.negative_share)} negative`);
  head.append(stats);
  if (change !== null && change !== undefined) {
    head.append(el("span", { class: "stats " + (change > 0 ? "up" : "down") },
                   `${change > 0 ? "+" : ""}${(change * 100).toFixed(0)} pts vs previous`));
  }
  if (entity.alerts) head.append(el("span", { class: "stats up" }, `${entity.alerts} alerts`));
  card.append(head);
  return card;
}

async function loadEntities() {
  const hours = Number($("hours").value);
  $("status").textContent = "loading…";
  try {
    const data = await getJSON(`/api/entities?hours=${hours}&limit=${MAX_ENTITIES}`);
    const bucket = chooseBucket(data.entities);
    const days = Math.max(1, Math.ceil(hours / 24));
    const box = $("entities");
    box.replaceChildren();
    if (!data.entities.length) {
      box.append(el("p", { class: "muted" }, `No entity mentioned in the last ${hours} h.`));
    }
    const cards = data.entities.map((e) => { const c = entityCard(e); box.append(c); return c; });
    const histories = await Promise.all(data.entities.map((e) => getJSON(
      `/api/entities/${encodeURIComponent(e.entity_key)}/history?bucket=${bucket}&days=${days}`)));
    const domain = sharedDomain(histories, bucket);
    histories.forEach((hist, i) => cards[i].append(drawChart(hist, bucket, domain)));
    focusFromHash(histories);
    $("status").textContent = `${data.entities.length} entities · ${bucket} buckets · ` +
      `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (err) {
    $("status").textContent = "error: " + err.message;
  }
}

// #entity=KEY (the link in delivered alerts): scroll to that entity and list its mentions.
function focusFromHash(histories) {
  const match = /^#entity=(.+)$/.exec(location.hash);
  if (!match) return;
  const key = decodeURIComponent(match[1]);
  const card = document.querySelector(`article[data-entity-key="${CSS.escape(key)}"]`);
  const hist = histories.find((h) => h.entity_key === key);
  if (card) { card.classList.add("focus"); card.scrollIntoView(); }
  if (hist && hist.points.length) {
    showMentions(hist, hist.since, hist.until);
  }
}

function showTweets(title, rows) {
  $("detail-title").textContent = title;
  $("detail-hint").hidden = true;
  const list = $("detail");
  list.replaceChildren();
  for (const r of rows) {
    const li = el("li", { "data-tweet-id": r.tweet_id });
    li.append(el("div", {}, r.text));
    const s = r.sentiment || r.tweet_sentiment;
    li.append(el("div", { class: "meta " + s },
                 `${new Date(r.created_at).toLocaleString()} · ${s}` +
                 (r.score !== undefined ? ` (${r.score.toFixed(2)})` : "")));
    list.append(li);
  }
  if (!rows.length) list.append(el("li", { class: "muted" }, "no tweets"));
}

async function showMentions(history, since, until, sentiment) {
  const q = new URLSearchParams({ since, until, limit: "100" });
  if (sentiment) q.set("sentiment", sentiment);
  const data = await getJSON(
    `/api/entities/${encodeURIComponent(history.entity_key)}/mentions?${q}`);
  showTweets(`${history.entity}: ${sentiment ? sentiment + " " : ""}mentions from ` +
             `${new Date(since).toLocaleString()}`, data.mentions);
}

async function showAlert(alertId) {
  const alert = await getJSON(`/api/alerts/${encodeURIComponent(alertId)}`);
  showTweets(`alert: ${alert.entity} (${alert.negative_mentions}/${alert.mentions} negative)`,
             alert.tweets);
}

function addAlert(alert, fresh) {
  if (seenAlerts.has(alert.alert_id)) return;
  seenAlerts.add(alert.alert_id);
  const li = el("li", { "data-alert-id": alert.alert_id, class: fresh ? "new" : "" });
  li.append(el("strong", {}, alert.entity + " "));
  li.append(el("span", {}, alert.text));
  li.append(el("div", { class: "meta" }, `${new Date(alert.window_end).toLocaleString()} · ` +
               `${alert.negative_mentions}/${alert.mentions} negative · ${alert.generator}`));
  li.addEventListener("click", () => showAlert(alert.alert_id));
  const feed = $("feed");
  // Newest window first.
  const before = [...feed.children].find((c) => c.dataset.end < alert.window_end);
  li.dataset.end = alert.window_end;
  feed.insertBefore(li, before || null);
}

async function startFeed() {
  try {
    const data = await getJSON("/api/alerts?limit=50");
    data.alerts.forEach((a) => addAlert(a, false));
  } catch (err) {
    $("feed-state").textContent = "error: " + err.message;
  }
  const source = new EventSource("/api/alerts/stream");
  source.addEventListener("open", () => { $("feed-state").textContent = "(live)"; });
  source.addEventListener("error", () => { $("feed-state").textContent = "(reconnecting)"; });
  source.addEventListener("alert", (ev) => addAlert(JSON.parse(ev.data), true));
}

$("hours").addEventListener("change", loadEntities);
$("bucket").addEventListener("change", loadEntities);
window.addEventListener("hashchange", loadEntities);
loadEntities();
startFeed();
