/*
 * Warren management UI: a small single-page app over the RabbitMQ-compatible /api.
 *
 * No framework and no build step. Pages are chosen by the URL hash (#/queues, #/queues/vhost/name
 * ...); each page function renders into <main> and may register a refresh timer that is cleared
 * when the page changes. Credentials typed into the login form are kept in sessionStorage and
 * sent as HTTP basic auth on every API call.
 *
 * This file holds the shell (login, routing, API access, tables, charts), the overview and the
 * queue and exchange pages. The other pages and parts are loaded before it by index.html:
 * forms.js (form parts, the arguments editor), declare.js (declare / delete / bind forms),
 * history.js (the queue and exchange charts), details.js (connections, channels, consumers),
 * admin.js (the Admin page), definitions.js (export / import) and trace.js (the Trace page).
 */
"use strict";

const AUTH_KEY = "warren.auth";
const USER_KEY = "warren.user";
const POLL_MS = 5000;
const HISTORY_SAMPLES = 120; // 10 minutes of 5 s samples

const main = document.getElementById("main");
let pageCleanups = []; // run when the page changes: timers, listeners
let renderToken = 0;

/* ---------------------------------------------------------------- helpers */

/** Create an element: el("td", {class: "num"}, "12") ; attributes starting with "on" are listeners. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const enc = encodeURIComponent;

function fmtNumber(value) {
  if (value === undefined || value === null) return "";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? value.toLocaleString() : value.toFixed(1);
}

function fmtRate(value) {
  return `${(value || 0).toFixed(1)}/s`;
}

function fmtBytes(value) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = value || 0;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) { size /= 1024; unit += 1; }
  return `${unit ? size.toFixed(1) : size} ${units[unit]}`;
}

function exchangeLabel(name) {
  return name === "" ? "(AMQP default)" : name;
}

function exchangePathName(name) {
  return name === "" ? "amq.default" : name;
}

function toast(message, isError) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.className = isError ? "toast error" : "toast";
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, isError ? 6000 : 3000);
}

function every(ms, fn) {
  const id = setInterval(fn, ms);
  pageCleanups.push(() => clearInterval(id));
}

/* ---------------------------------------------------------------- API access */

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.reason || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Basic ${sessionStorage.getItem(AUTH_KEY) || ""}`,
    ...(options.headers || {}) };
  const init = { method: options.method || "GET", headers };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let body = null;
  if (text) {
    try { body = JSON.parse(text); } catch (err) { body = { reason: text }; }
  }
  if (response.status === 401 && !options.noLogout) {
    logout("Your session is not authorised any more; please log in again.");
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/* ---------------------------------------------------------------- login */

function showLogin(message) {
  document.getElementById("header").hidden = true;
  main.hidden = true;
  document.getElementById("login-view").hidden = false;
  const error = document.getElementById("login-error");
  error.textContent = message || "";
  error.hidden = !message;
  document.getElementById("login-username").focus();
}

function logout(message) {
  sessionStorage.removeItem(AUTH_KEY);
  sessionStorage.removeItem(USER_KEY);
  stopPage();
  overviewPoller.stop();
  showAlarms(null);
  showLogin(message);
}

function showApp() {
  document.getElementById("login-view").hidden = true;
  document.getElementById("header").hidden = false;
  main.hidden = false;
  document.getElementById("whoami").textContent = sessionStorage.getItem(USER_KEY) || "";
  overviewPoller.start();
  route();
}

document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = document.getElementById("login-username").value;
  const password = document.getElementById("login-password").value;
  // btoa only takes Latin-1: encode UTF-8 bytes first
  const token = btoa(String.fromCharCode(...new TextEncoder().encode(`${username}:${password}`)));
  sessionStorage.setItem(AUTH_KEY, token);
  try {
    const who = await api("/api/whoami", { noLogout: true });
    sessionStorage.setItem(USER_KEY, who.name);
    document.getElementById("login-password").value = "";
    showApp();
  } catch (err) {
    sessionStorage.removeItem(AUTH_KEY);
    showLogin(err.status === 401 ? "Login failed: wrong user name or password." : err.message);
  }
});

document.getElementById("logout").addEventListener("click", () => logout());

/* ---------------------------------------------------------------- routing */

const PAGES = {
  overview: renderOverview,
  connections: renderConnections,
  channels: renderChannels,
  exchanges: renderExchanges,
  queues: renderQueues,
  admin: renderAdmin,
  trace: renderTrace, // trace.js
};

function stopPage() {
  pageCleanups.forEach((cleanup) => cleanup());
  pageCleanups = [];
  renderToken += 1;
}

function route() {
  if (!sessionStorage.getItem(AUTH_KEY)) {
    showLogin();
    return;
  }
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const page = PAGES[parts[0]] ? parts[0] : "overview";
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  stopPage();
  main.replaceChildren();
  const token = renderToken;
  Promise.resolve(PAGES[page](parts.slice(1), token)).catch((err) => {
    if (token !== renderToken) return;
    main.replaceChildren(el("h1", {}, "Error"), el("p", { class: "error" }, err.message));
  });
}

window.addEventListener("hashchange", route);

/* ---------------------------------------------------------------- tables */

/**
 * A table whose body is re-rendered in one go through a DocumentFragment.
 * columns: [{title, value: item => text|Node, num: bool}]
 */
function makeTable(columns, emptyText) {
  const tbody = el("tbody");
  const table = el("table", {},
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null },
      c.title)))),
    tbody);
  table.update = (items, rowAttrs) => {
    const fragment = document.createDocumentFragment();
    if (!items.length) {
      fragment.append(el("tr", {}, el("td", { colspan: columns.length, class: "empty" },
        emptyText || "Nothing to show")));
    }
    for (const item of items) {
      const row = document.createElement("tr");
      if (rowAttrs) for (const [k, v] of Object.entries(rowAttrs(item))) row.dataset[k] = v;
      for (const column of columns) {
        const cell = document.createElement("td");
        if (column.num) cell.className = "num";
        const value = column.value(item);
        if (value instanceof Node) cell.append(value);
        else cell.textContent = value === undefined || value === null ? "" : String(value);
        row.append(cell);
      }
      fragment.append(row);
    }
    tbody.replaceChildren(fragment);
  };
  return table;
}

/** A page with a title and a table refreshed every POLL_MS from `path`. */
async function listPage(title, path, columns, token, rowAttrs) {
  const table = makeTable(columns);
  const count = el("span", { class: "muted" });
  main.append(el("div", { class: "toolbar" }, el("h1", {}, title), count), table);
  const load = async () => {
    const items = await api(path);
    if (token !== renderToken) return;
    count.textContent = `${items.length} total`;
    table.update(items, rowAttrs);
  };
  await load();
  every(POLL_MS, () => load().catch(() => {}));
  return load;
}

/* ---------------------------------------------------------------- overview */

/** Polls /api/overview every 5 s while logged in, so charts have history across page changes. */
const overviewPoller = {
  history: [],
  latest: null,
  listeners: new Set(),
  timer: null,
  start() {
    if (this.timer) return;
    this.poll();
    this.timer = setInterval(() => this.poll(), POLL_MS);
  },
  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.history = [];
  },
  async poll() {
    try {
      // /api/nodes needs the monitoring tag: without it the node's figures are simply absent
      const nodes = await api("/api/nodes").catch(() => null);
      this.node = nodes && nodes[0];
      showAlarms(this.node);
      const data = await api("/api/overview");
      const stats = data.message_stats || {};
      const rate = (key) => (stats[`${key}_details`] || {}).rate || 0;
      const totals = data.queue_totals || {};
      this.latest = data;
      this.history.push({
        time: Date.now(),
        publish: rate("publish"),
        deliver_get: rate("deliver_get"),
        ack: rate("ack"),
        ready: totals.messages_ready || 0,
        unacked: totals.messages_unacknowledged || 0,
      });
      if (this.history.length > HISTORY_SAMPLES) this.history.shift();
      this.listeners.forEach((fn) => fn());
    } catch (err) {
      /* a failed poll leaves a gap; 401 is handled by api() */
    }
  },
};

/** The banner under the header while a resource alarm blocks publishers, on every page. */
function showAlarms(node) {
  const banner = document.getElementById("alarm-banner");
  const alarms = [];
  if (node && node.mem_alarm) {
    alarms.push(`memory alarm: ${fmtBytes(node.mem_used)} used, high watermark ` +
      `${fmtBytes(node.mem_limit)}`);
  }
  if (node && node.disk_free_alarm) {
    alarms.push(`disk alarm: ${fmtBytes(node.disk_free)} free, limit ` +
      `${fmtBytes(node.disk_free_limit)}`);
  }
  banner.textContent = alarms.length
    ? `Publishers are blocked: ${alarms.join("; ")}.` : "";
  banner.hidden = !alarms.length;
}

const RATE_SERIES = [
  { key: "publish", label: "Publish", color: "#e8590c" },
  { key: "deliver_get", label: "Deliver / get", color: "#2563eb" },
  { key: "ack", label: "Ack", color: "#16a34a" },
];
const DEPTH_SERIES = [
  { key: "ready", label: "Ready", color: "#ca8a04" },
  { key: "unacked", label: "Unacked", color: "#7c3aed" },
];

/** Draw line series of `history` on a canvas, scaled to the device pixel ratio. */
function drawChart(canvas, history, series, unit) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 400;
  const height = canvas.clientHeight || 200;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  const pad = { left: 52, right: 10, top: 10, bottom: 22 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  let max = 0;
  for (const sample of history) for (const s of series) max = Math.max(max, sample[s.key]);
  max = niceCeiling(max);

  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#66707b";
  ctx.strokeStyle = "#e5e7eb";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= 4; i += 1) {
    const y = pad.top + plotH - (plotH * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.left, Math.round(y) + 0.5);
    ctx.lineTo(pad.left + plotW, Math.round(y) + 0.5);
    ctx.stroke();
    const value = (max * i) / 4;
    ctx.fillText(`${+value.toPrecision(3)}${unit}`, pad.left - 6, y);
  }
  const span = HISTORY_SAMPLES * POLL_MS;
  const now = history.length ? history[history.length - 1].time : Date.now();
  const xOf = (time) => pad.left + plotW - ((now - time) / span) * plotW;
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let minutes = 0; minutes <= 10; minutes += 2) {
    const x = xOf(now - minutes * 60000);
    ctx.fillText(minutes === 0 ? "now" : `-${minutes}m`, x, pad.top + plotH + 6);
  }
  if (!history.length) return;
  ctx.lineWidth = 2;
  ctx.lineJoin = "round";
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.beginPath();
    history.forEach((sample, i) => {
      const x = xOf(sample.time);
      const y = pad.top + plotH - (sample[s.key] / max) * plotH;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    if (history.length === 1) ctx.arc(xOf(history[0].time), pad.top + plotH -
      (history[0][s.key] / max) * plotH, 1.5, 0, Math.PI * 2);
    ctx.stroke();
  }
}

function niceCeiling(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

function legend(series) {
  return el("div", { class: "legend" },
    series.map((s) => el("span", { style: `--swatch: ${s.color}` }, s.label)));
}

function renderOverview(args, token) {
  const statBox = (id, label) => el("div", { class: "card stat" },
    el("div", { class: "value", id }, "–"), el("div", { class: "label" }, label));
  const rateCanvas = el("canvas", { id: "chart-rates" });
  const depthCanvas = el("canvas", { id: "chart-depth" });
  main.append(
    el("h1", {}, "Overview"),
    el("div", { class: "stats" },
      statBox("ov-ready", "Ready"), statBox("ov-unacked", "Unacked"),
      statBox("ov-total", "Total messages"), statBox("ov-publish", "Publish rate"),
      statBox("ov-deliver", "Deliver rate"), statBox("ov-queues", "Queues"),
      statBox("ov-connections", "Connections"), statBox("ov-channels", "Channels"),
      statBox("ov-consumers", "Consumers"), statBox("ov-memory", "Memory used / watermark"),
      statBox("ov-disk", "Disk free / limit")),
    el("div", { class: "charts" },
      el("div", { class: "card chart" }, el("h2", {}, "Message rates"), rateCanvas,
        legend(RATE_SERIES)),
      el("div", { class: "card chart" }, el("h2", {}, "Queued messages"), depthCanvas,
        legend(DEPTH_SERIES))),
    el("p", { class: "muted", id: "ov-node" }),
    definitionsCards());

  const set = (id, text) => { const node = document.getElementById(id); if (node) node.textContent = text; };
  const update = () => {
    if (token !== renderToken) return;
    const data = overviewPoller.latest;
    const history = overviewPoller.history;
    if (data) {
      const totals = data.queue_totals || {};
      const objects = data.object_totals || {};
      const last = history[history.length - 1] || {};
      set("ov-ready", fmtNumber(totals.messages_ready || 0));
      set("ov-unacked", fmtNumber(totals.messages_unacknowledged || 0));
      set("ov-total", fmtNumber(totals.messages || 0));
      set("ov-publish", fmtRate(last.publish));
      set("ov-deliver", fmtRate(last.deliver_get));
      set("ov-queues", fmtNumber(objects.queues || 0));
      set("ov-connections", fmtNumber(objects.connections || 0));
      set("ov-channels", fmtNumber(objects.channels || 0));
      set("ov-consumers", fmtNumber(objects.consumers || 0));
      const node = overviewPoller.node;
      if (node) {
        set("ov-memory", `${fmtBytes(node.mem_used)} / ${fmtBytes(node.mem_limit)}`);
        set("ov-disk", `${fmtBytes(node.disk_free)} / ${fmtBytes(node.disk_free_limit)}`);
        document.getElementById("ov-memory").classList.toggle("alarm", node.mem_alarm);
        document.getElementById("ov-disk").classList.toggle("alarm", node.disk_free_alarm);
      }
      set("ov-node", `${data.product_name || "Warren"} ${data.product_version || ""} on ` +
        `${data.node} · RabbitMQ ${data.rabbitmq_version} compatible · ${data.erlang_version}`);
    }
    drawChart(rateCanvas, history, RATE_SERIES, "/s");
    drawChart(depthCanvas, history, DEPTH_SERIES, "");
  };
  overviewPoller.listeners.add(update);
  pageCleanups.push(() => overviewPoller.listeners.delete(update));
  const onResize = () => update();
  window.addEventListener("resize", onResize);
  pageCleanups.push(() => window.removeEventListener("resize", onResize));
  update();
  if (!overviewPoller.latest) overviewPoller.poll();
}

/* ---------------------------------------------------------------- queues */

/** RabbitMQ 3.10.8's abbreviations of a queue's or exchange's features, in its order (its UI's
 * IMPLICIT_ARGS, then KNOWN_ARGS); any other argument is folded into "Args". */
const FEATURE_ABBREVIATIONS = [
  ["durable", "D"], ["auto-delete", "AD"], ["internal", "I"], ["exclusive", "Excl"],
  ["alternate-exchange", "AE"], ["x-message-ttl", "TTL"], ["x-expires", "Exp"],
  ["x-max-length", "Lim"], ["x-max-length-bytes", "Lim B"], ["x-delivery-limit", "DlL"],
  ["x-overflow", "Ovfl"], ["x-dead-letter-exchange", "DLX"],
  ["x-dead-letter-routing-key", "DLK"], ["x-queue-master-locator", "ML"],
  ["x-max-priority", "Pri"], ["x-single-active-consumer", "SAC"],
];
const KNOWN_FEATURES = new Set(FEATURE_ABBREVIATIONS.map(([key]) => key));

/** An argument value as RabbitMQ's UI writes it flat: lists in [], tables in (). */
function flatValue(value) {
  if (Array.isArray(value)) return `[${value.map(flatValue).join(",")}]`;
  if (value !== null && typeof value === "object") {
    return `(${Object.entries(value).map(([k, v]) => `${k}: ${flatValue(v)}`).join(", ")})`;
  }
  return String(value);
}

/** The features cell of a queue or exchange list, as RabbitMQ's: an exclusive queue's "Excl"
 * links to its owning connection, each abbreviation's tooltip says "key: value" (a false
 * boolean argument is not shown), then the policy and operator policy. */
function featureCell(x) {
  const features = {};
  const others = [];
  for (const [key, value] of Object.entries(x.arguments || {})) {
    if (!KNOWN_FEATURES.has(key)) others.push(`${key}: ${flatValue(value)}`);
    else if (value !== false) features[key] = value;
  }
  for (const [key, field] of [["exclusive", "exclusive"], ["durable", "durable"],
    ["auto-delete", "auto_delete"], ["internal", "internal"]]) {
    if (x[field]) features[key] = true;
  }
  const cell = el("span", { class: "features" });
  if (x.owner_pid_details) {
    cell.append(el("abbr", { title: "Exclusive queue: click for owning connection" },
      el("a", { href: `#/connections/${enc(x.owner_pid_details.name)}` }, "Excl")), " ");
  }
  for (const [key, short] of FEATURE_ABBREVIATIONS) {
    if (features[key] !== undefined) {
      cell.append(el("abbr", { title: `${key}: ${features[key]}` }, short), " ");
    }
  }
  if (others.length) cell.append(el("abbr", { title: others.join(", ") }, "Args"), " ");
  if (x.policy) {
    cell.append(el("abbr", { class: "policy", title: `Policy: ${x.policy}` }, x.policy), " ");
  }
  if (x.operator_policy) {
    cell.append(el("abbr", { class: "policy", title: `Operator policy: ${x.operator_policy}` },
      x.operator_policy));
  }
  return cell;
}

/** The current rate of one message_stats counter of an API object (0 when it has none). */
function statRate(x, key) {
  return ((x.message_stats || {})[`${key}_details`] || {}).rate || 0;
}

async function renderQueues(args, token) {
  if (args.length >= 2) return renderQueue(args[0], args.slice(1).join("/"), token);
  const state = { page: 1, pageSize: 100, filter: sessionStorage.getItem("warren.qfilter") || "" };
  const filter = el("input", { type: "search", id: "queue-filter", placeholder: "Filter by name",
    value: state.filter });
  const pageSize = el("select", { id: "queue-page-size" },
    [50, 100, 200, 500].map((n) => el("option", { value: n, selected: n === 100 }, n)));
  const count = el("span", { class: "muted", id: "queue-count" });
  const prev = el("button", { class: "secondary", type: "button" }, "‹ Prev");
  const next = el("button", { class: "secondary", type: "button" }, "Next ›");
  const pageInfo = el("span", { class: "muted" });
  const table = makeTable([
    { title: "Name", value: (x) => el("a", { href: `#/queues/${enc(x.vhost)}/${enc(x.name)}` },
      x.name) },
    { title: "Virtual host", value: (x) => x.vhost },
    { title: "Type", value: (x) => x.type || "classic" },
    { title: "Features", value: featureCell },
    { title: "State", value: (x) => el("span", { class: `badge ${x.state || ""}` },
      x.state || "") },
    { title: "Ready", num: true, value: (x) => fmtNumber(x.messages_ready) },
    { title: "Unacked", num: true, value: (x) => fmtNumber(x.messages_unacknowledged) },
    { title: "Consumers", num: true, value: (x) => fmtNumber(x.consumers) },
    { title: "Publish", num: true, value: (x) => fmtRate(statRate(x, "publish")) },
    { title: "Deliver / get", num: true, value: (x) => fmtRate(statRate(x, "deliver_get")) },
    { title: "Ack", num: true, value: (x) => fmtRate(statRate(x, "ack")) },
  ], "No queues");
  main.append(
    el("div", { class: "toolbar" }, el("h1", {}, "Queues"), el("span", { class: "spacer" }),
      filter, el("label", { class: "muted" }, "Page size ", pageSize), count),
    table,
    el("div", { class: "pager" }, prev, pageInfo, next),
    addQueueForm(() => load()));

  let loading = null;
  const load = async () => {
    const query = new URLSearchParams({
      page: state.page, page_size: state.pageSize, name: state.filter,
      columns: "name,vhost,type,durable,auto_delete,exclusive,owner_pid_details,arguments," +
        "policy,operator_policy,state,messages_ready,messages_unacknowledged,consumers," +
        "message_stats",
    });
    let result;
    try {
      result = await api(`/api/queues?${query}`);
    } catch (err) {
      if (err.body && err.body.error === "page_out_of_range" && state.page > 1) {
        state.page = 1;
        return load();
      }
      throw err;
    }
    if (token !== renderToken) return;
    table.update(result.items, (x) => ({ name: x.name, vhost: x.vhost }));
    count.textContent = state.filter
      ? `${fmtNumber(result.filtered_count)} of ${fmtNumber(result.total_count)} queues`
      : `${fmtNumber(result.total_count)} queue${result.total_count === 1 ? "" : "s"}`;
    pageInfo.textContent = `Page ${result.page} of ${Math.max(1, result.page_count)}`;
    prev.disabled = result.page <= 1;
    next.disabled = result.page >= result.page_count;
  };
  const reload = () => {
    loading = load().catch((err) => toast(err.message, true));
    return loading;
  };
  let debounce = null;
  filter.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      state.filter = filter.value;
      sessionStorage.setItem("warren.qfilter", state.filter);
      state.page = 1;
      reload();
    }, 250);
  });
  pageSize.addEventListener("change", () => {
    state.pageSize = Number(pageSize.value);
    state.page = 1;
    reload();
  });
  prev.addEventListener("click", () => { state.page -= 1; reload(); });
  next.addEventListener("click", () => { state.page += 1; reload(); });
  await load();
  every(POLL_MS, () => load().catch(() => {}));
}

async function renderQueue(vhost, name, token) {
  const base = `/api/queues/${enc(vhost)}/${enc(name)}`;
  const details = el("dl", { class: "props", id: "queue-details" });
  let load = null; // set below; the forms reload the page through it
  const reload = () => load();
  const bindings = makeTable([
    { title: "From exchange", value: (b) => exchangeLabel(b.source) },
    { title: "Routing key", value: (b) => b.routing_key },
    { title: "Arguments", value: (b) => JSON.stringify(b.arguments || {}) },
    { title: "", value: (b) => unbindButton(vhost, b, reload) },
  ], "No bindings");
  const consumers = makeTable(consumerColumns(), "No consumers");
  const charts = historyCharts("queue", QUEUE_CHARTS);
  const stat = (id, label) => el("div", { class: "card stat" },
    el("div", { class: "value", id }, "–"), el("div", { class: "label" }, label));

  const publishForm = el("form", { class: "stack", id: "publish-form" },
    el("label", {}, "Payload", el("textarea", { name: "payload", id: "publish-payload" })),
    el("label", {}, "Headers (JSON object, optional)",
      el("input", { name: "headers", id: "publish-headers", placeholder: "{\"key\": \"value\"}" })),
    el("label", {}, "Delivery mode", el("select", { name: "delivery_mode" },
      el("option", { value: "1" }, "1 – non-persistent"),
      el("option", { value: "2" }, "2 – persistent"))),
    el("div", {}, el("button", { type: "submit", id: "publish-submit" }, "Publish message")));

  const messages = el("div", { class: "messages", id: "get-results" });
  const getForm = el("form", { class: "inline", id: "get-form" },
    el("label", {}, "Ack mode", el("select", { name: "ackmode", id: "get-ackmode" },
      el("option", { value: "ack_requeue_true" }, "Nack, requeue"),
      el("option", { value: "ack_requeue_false" }, "Ack (remove)"),
      el("option", { value: "reject_requeue_true" }, "Reject, requeue"),
      el("option", { value: "reject_requeue_false" }, "Reject, no requeue"))),
    el("label", {}, "Encoding", el("select", { name: "encoding" },
      el("option", { value: "auto" }, "auto"), el("option", { value: "base64" }, "base64"))),
    el("label", {}, "Messages", el("input", { name: "count", type: "number", min: 1, value: 1,
      style: "width: 80px" })),
    el("button", { type: "submit", id: "get-submit" }, "Get messages"));

  const purge = el("button", { type: "button", class: "danger", id: "purge" }, "Purge messages");

  main.append(
    el("p", {}, el("a", { href: "#/queues" }, "← Queues")),
    el("h1", {}, "Queue ", el("span", { id: "queue-name" }, name),
      el("span", { class: "muted" }, ` in ${vhost}`)),
    el("div", { class: "stats" },
      stat("q-ready", "Ready"), stat("q-unacked", "Unacked"), stat("q-total", "Total"),
      stat("q-consumers", "Consumers"), stat("q-state", "State")),
    el("div", { class: "grid2", style: "margin-top: 16px" },
      el("div", { class: "card" }, el("h2", { style: "margin-top: 0" }, "Details"), details),
      el("div", { class: "card" }, el("h2", { style: "margin-top: 0" }, "Bindings"), bindings,
        el("h2", {}, "Add binding to this queue"), bindForm(vhost, "queue", name, reload))),
    charts,
    el("div", { class: "card", style: "margin-top: 16px" },
      el("h2", { style: "margin-top: 0" }, "Consumers"), consumers),
    el("div", { class: "grid2", style: "margin-top: 16px" },
      el("div", { class: "card" }, el("h2", { style: "margin-top: 0" }, "Publish message"),
        publishForm),
      el("div", { class: "card" }, el("h2", { style: "margin-top: 0" }, "Get messages"), getForm,
        messages,
        el("h2", {}, "Purge"), purge)),
    el("div", { style: "margin-top: 16px" },
      deleteSection("queue", name, base, "#/queues")));

  load = async () => {
    const [queue, queueBindings] = await Promise.all([api(`${base}?${HISTORY_QUERY}`),
      api(`${base}/bindings`)]);
    if (token !== renderToken) return;
    const set = (id, text) => { document.getElementById(id).textContent = text; };
    set("q-ready", fmtNumber(queue.messages_ready));
    set("q-unacked", fmtNumber(queue.messages_unacknowledged));
    set("q-total", fmtNumber(queue.messages));
    set("q-consumers", fmtNumber(queue.consumers));
    set("q-state", queue.state || "");
    const rows = [
      ["Type", queue.type], ["Durable", queue.durable], ["Auto delete", queue.auto_delete],
      ["Exclusive", queue.exclusive], ["Policy", queue.policy || ""],
      ["Operator policy", queue.operator_policy || ""],
      ["Effective policy definition", Object.entries(queue.effective_policy_definition || {})
        .map(([key, value]) => `${key}: ${flatValue(value)}`).join(", ")],
      ["Node", queue.node],
      ["Arguments", JSON.stringify(queue.arguments || {})],
      ["Consumer capacity", queue.consumer_capacity],
      ["Message bytes", queue.message_bytes],
    ];
    const fragment = document.createDocumentFragment();
    for (const [label, value] of rows) {
      if (value === undefined) continue;
      fragment.append(el("dt", {}, label), el("dd", {}, String(value)));
    }
    details.replaceChildren(fragment);
    bindings.update(queueBindings);
    consumers.update(queue.consumer_details || []);
    charts.update(queue);
  };

  publishForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(publishForm);
    const properties = { delivery_mode: Number(form.get("delivery_mode")) };
    const headers = String(form.get("headers") || "").trim();
    if (headers) {
      try { properties.headers = JSON.parse(headers); } catch (err) {
        toast("Headers must be a JSON object", true);
        return;
      }
    }
    try {
      const result = await api(`/api/exchanges/${enc(vhost)}/amq.default/publish`, {
        method: "POST",
        body: { properties, routing_key: name, payload: form.get("payload"),
          payload_encoding: "string" },
      });
      toast(result.routed ? "Message published." : "Message published but not routed.",
        !result.routed);
      await load();
    } catch (err) {
      toast(`Publish failed: ${err.message}`, true);
    }
  });

  getForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(getForm);
    try {
      const got = await api(`${base}/get`, {
        method: "POST",
        body: { count: Number(form.get("count")) || 1, ackmode: form.get("ackmode"),
          encoding: form.get("encoding"), truncate: 50000 },
      });
      const fragment = document.createDocumentFragment();
      if (!got.length) fragment.append(el("p", { class: "muted" }, "Queue is empty."));
      got.forEach((m, i) => fragment.append(el("div", { class: "message" },
        el("strong", {}, `Message ${i + 1}`),
        el("span", { class: "muted" },
          ` · exchange ${exchangeLabel(m.exchange)} · routing key ${m.routing_key}` +
          ` · redelivered ${m.redelivered} · ${m.payload_bytes} bytes (${m.payload_encoding})`),
        Object.keys(m.properties || {}).length
          ? el("pre", { class: "props" }, JSON.stringify(m.properties)) : null,
        el("pre", { class: "payload" }, m.payload))));
      messages.replaceChildren(fragment);
      await load();
    } catch (err) {
      toast(`Get failed: ${err.message}`, true);
    }
  });

  purge.addEventListener("click", async () => {
    if (!window.confirm(`Purge all messages from ${name}?`)) return;
    try {
      await api(`${base}/contents`, { method: "DELETE" });
      toast("Queue purged.");
      await load();
    } catch (err) {
      toast(`Purge failed: ${err.message}`, true);
    }
  });

  await load();
  every(POLL_MS, () => load().catch(() => {}));
}

/* ---------------------------------------------------------------- exchanges */

function features(x) {
  return [x.durable && "durable", x.auto_delete && "auto-delete", x.internal && "internal"]
    .filter(Boolean).join(", ");
}

async function renderExchanges(args, token) {
  if (args.length >= 2) return renderExchange(args[0], args.slice(1).join("/"), token);
  const reload = await listPage("Exchanges", "/api/exchanges", [
    { title: "Name", value: (x) => el("a", {
      href: `#/exchanges/${enc(x.vhost)}/${enc(exchangePathName(x.name))}` },
    exchangeLabel(x.name)) },
    { title: "Virtual host", value: (x) => x.vhost },
    { title: "Type", value: (x) => x.type },
    { title: "Features", value: featureCell },
    { title: "Publish in", num: true, value: (x) => fmtRate(statRate(x, "publish_in")) },
    { title: "Publish out", num: true, value: (x) => fmtRate(statRate(x, "publish_out")) },
  ], token, (x) => ({ name: x.name, vhost: x.vhost }));
  if (token === renderToken) main.append(addExchangeForm(reload));
}

async function renderExchange(vhost, name, token) {
  const base = `/api/exchanges/${enc(vhost)}/${enc(name)}`;
  const details = el("dl", { class: "props" });
  let load = null; // set below; the forms reload the page through it
  const reload = () => load();
  const charts = historyCharts("exchange", EXCHANGE_CHARTS);
  const bindingColumns = (end) => [
    { title: end === "destination" ? "To" : "From", value: (b) => {
      const target = end === "destination" ? b.destination : b.source;
      const kind = end === "destination" ? b.destination_type : "exchange";
      if (kind === "queue") return el("a", { href: `#/queues/${enc(vhost)}/${enc(target)}` }, target);
      return el("a", { href: `#/exchanges/${enc(vhost)}/${enc(exchangePathName(target))}` },
        exchangeLabel(target));
    } },
    { title: "Type", value: (b) => (end === "destination" ? b.destination_type : "exchange") },
    { title: "Routing key", value: (b) => b.routing_key },
    { title: "Arguments", value: (b) => JSON.stringify(b.arguments || {}) },
    { title: "", value: (b) => unbindButton(vhost, b, reload) },
  ];
  const outgoing = makeTable(bindingColumns("destination"), "No bindings from this exchange");
  const incoming = makeTable(bindingColumns("source"), "No bindings to this exchange");
  main.append(
    el("p", {}, el("a", { href: "#/exchanges" }, "← Exchanges")),
    el("h1", {}, "Exchange ", exchangeLabel(name === "amq.default" ? "" : name),
      el("span", { class: "muted" }, ` in ${vhost}`)),
    el("div", { class: "card" }, details),
    charts,
    el("h2", {}, "Bindings from this exchange"), outgoing,
    el("h2", {}, "Bindings to this exchange"), incoming,
    el("div", { class: "grid2", style: "margin-top: 16px" },
      name === "amq.default" ? el("div") : el("div", { class: "card" },
        el("h2", { style: "margin-top: 0" }, "Add binding from this exchange"),
        bindForm(vhost, "exchange", name, reload)),
      el("div", { class: "card" }, el("h2", { style: "margin-top: 0" }, "Publish message"),
        exchangePublishForm(vhost, name, reload))),
    name === "amq.default" || name.startsWith("amq.") ? null : el("div",
      { style: "margin-top: 16px" }, deleteSection("exchange", name, base, "#/exchanges")));
  load = async () => {
    const [exchange, source, destination] = await Promise.all([
      api(`${base}?${HISTORY_QUERY}`), api(`${base}/bindings/source`),
      api(`${base}/bindings/destination`)]);
    if (token !== renderToken) return;
    const fragment = document.createDocumentFragment();
    for (const [label, value] of [["Type", exchange.type], ["Features", features(exchange)],
      ["Policy", exchange.policy || ""], ["Arguments", JSON.stringify(exchange.arguments || {})]]) {
      fragment.append(el("dt", {}, label), el("dd", {}, value));
    }
    details.replaceChildren(fragment);
    outgoing.update(source);
    incoming.update(destination);
    charts.update(exchange);
  };
  await load();
  every(POLL_MS, () => load().catch(() => {}));
}

/* ---------------------------------------------------------------- start */

if (sessionStorage.getItem(AUTH_KEY)) showApp(); else showLogin();
