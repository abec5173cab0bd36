/*
 * Warren management UI: the Trace page (#/trace), Warren's own (RabbitMQ's UI has no such page).
 *
 * Starts a trace session for a vhost through /api/trace-sessions (optionally filtered by
 * exchange, queue or routing-key pattern), polls it every second and lists the traced events as
 * they arrive; clicking an event shows that message's journey: published to which exchange,
 * routed to which queues, delivered, dead-lettered (with the reason, and where the copy went)
 * or dropped. The session ends with the Stop button or when the page is left.
 *
 * Loaded before app.js; uses its helpers (el, api, enc, every, toast, main, pageCleanups,
 * renderToken, exchangeLabel, makeTable) when the page renders.
 */
"use strict";

const TRACE_POLL_MS = 1000;
const TRACE_KEEP = 500; // events the page keeps

const REASONS = {
  rejected: "rejected without requeue",
  expired: "expired (TTL)",
  maxlen: "over the queue's length limit",
  delivery_limit: "over the delivery limit",
};

function quoted(name) {
  return `"${name}"`;
}

/** One sentence for one event of a message's journey. */
function describeTraceEvent(e) {
  const keys = (e.routing_keys || []).join(", ");
  if (e.event === "published") {
    const routed = e.routed_queues && e.routed_queues.length
      ? `routed to ${e.routed_queues.map(quoted).join(", ")}` : "routed to no queue (unroutable)";
    return `Published to exchange ${quoted(exchangeLabel(e.exchange))} with routing key ` +
      `${quoted(keys)} by ${e.user} → ${routed}`;
  }
  if (e.event === "delivered") {
    let text = `Delivered from queue ${quoted(e.queue)}` +
      `${e.redelivered ? " (redelivered)" : ""} to ${e.connection}, channel ${e.channel}`;
    if (e.x_death && e.x_death.length) {
      const death = e.x_death[0];
      text += ` · x-death: ${death.reason} in ${quoted(death.queue)} (count ${death.count})`;
    }
    return text;
  }
  const why = REASONS[e.reason] || e.reason;
  if (e.event === "dead_lettered") {
    const where = e.dead_letter_queues.length
      ? e.dead_letter_queues.map(quoted).join(", ") : "no queue";
    return `Left queue ${quoted(e.queue)}: ${why} → dead-lettered to exchange ` +
      `${quoted(exchangeLabel(e.dead_letter_exchange))} with routing key ` +
      `${quoted(e.dead_letter_routing_keys.join(", "))} → ${where}`;
  }
  if (e.event === "dropped") {
    return `Left queue ${quoted(e.queue)}: ${why} → dropped (no dead-letter exchange took it)`;
  }
  return e.event;
}

function traceTime(ms) {
  const time = new Date(ms);
  return time.toLocaleTimeString([], { hour12: false }) +
    `.${String(time.getMilliseconds()).padStart(3, "0")}`;
}

async function renderTrace(args, token) {
  const vhosts = await api("/api/vhosts");
  if (token !== renderToken) return;
  const vhostSelect = el("select", { name: "vhost", id: "trace-vhost" },
    vhosts.map((v) => el("option", { value: v.name }, v.name)));
  const input = (name, id, placeholder) => el("label", {}, name,
    el("input", { name: id, id: `trace-${id}`, placeholder }));
  const start = el("button", { type: "submit", id: "trace-start" }, "Start tracing");
  const stop = el("button", { type: "button", class: "secondary", id: "trace-stop",
    disabled: true }, "Stop");
  const form = el("form", { class: "inline", id: "trace-form" },
    el("label", {}, "Virtual host", vhostSelect),
    input("Exchange", "exchange", "any"), input("Queue", "queue", "any"),
    input("Routing key pattern", "routing-key", "any, e.g. orders.#"), start, stop);
  const status = el("p", { class: "muted", id: "trace-status" }, "Not tracing.");
  const events = makeTable([
    { title: "Time", value: (e) => traceTime(e.time) },
    { title: "Event", value: (e) => el("span", { class: `badge trace-${e.event}` },
      e.event.replace("_", "-")) },
    { title: "Exchange", value: (e) => exchangeLabel(e.exchange) },
    { title: "Routing keys", value: (e) => (e.routing_keys || []).join(", ") },
    { title: "Queue", value: (e) => e.queue || (e.routed_queues || []).join(", ") },
    { title: "Message", value: (e) => e.message_id || e.body },
  ], "No traced messages yet: publish or consume something in this vhost.");
  events.id = "trace-events";
  const journey = el("div", { class: "card", id: "trace-journey", hidden: true });
  main.append(el("h1", {}, "Trace"),
    el("p", { class: "muted" }, "Follow the messages of a virtual host as they are published, " +
      "routed, delivered and dead-lettered. Tracing also copies every publish and delivery to " +
      "the vhost's amq.rabbitmq.trace exchange while it runs. Click an event to see its " +
      "message's journey."),
    form, status, events, journey);

  let session = null;
  let seen = [];
  let since = 0;

  const showJourney = (key) => {
    const steps = seen.filter((e) => e.journey === key);
    const first = steps[0] || {};
    journey.replaceChildren(
      el("h2", { style: "margin-top: 0" }, "Journey of ",
        first.message_id ? `message ${quoted(first.message_id)}` : `${quoted(first.body)}`),
      el("ol", { class: "journey" }, steps.map((e) => el("li", { dataset: { event: e.event } },
        el("span", { class: "muted" }, `${traceTime(e.time)} `), describeTraceEvent(e)))));
    journey.hidden = false;
  };
  const redraw = () => {
    events.update(seen.slice().reverse(), (e) => ({ journey: e.journey, event: e.event }));
    status.textContent = `Tracing vhost ${session.vhost} (session ${session.id}): ` +
      `${seen.length} event${seen.length === 1 ? "" : "s"}.`;
  };
  const poll = async () => {
    if (!session) return;
    const got = await api(`/api/trace-sessions/${enc(session.vhost)}/${session.id}` +
      `?since=${since}`);
    if (token !== renderToken || !session) return;
    if (got.events.length) {
      since = got.events[got.events.length - 1].seq;
      seen = seen.concat(got.events).slice(-TRACE_KEEP);
    }
    redraw();
  };
  const end = async () => {
    if (!session) return;
    const ending = session;
    session = null;
    start.disabled = false;
    stop.disabled = true;
    await api(`/api/trace-sessions/${enc(ending.vhost)}/${ending.id}`, { method: "DELETE" })
      .catch(() => {});
  };

  events.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-journey]");
    if (row) showJourney(row.dataset.journey);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await end();
    const values = new FormData(form);
    const filters = {};
    for (const [field, key] of [["exchange", "exchange"], ["queue", "queue"],
      ["routing-key", "routing_key"]]) {
      const value = String(values.get(field) || "").trim();
      if (value) filters[key] = value;
    }
    try {
      session = await api(`/api/trace-sessions/${enc(values.get("vhost"))}`,
        { method: "POST", body: filters });
    } catch (err) {
      toast(`Could not start tracing: ${err.message}`, true);
      return;
    }
    seen = [];
    since = 0;
    journey.hidden = true;
    start.disabled = true;
    stop.disabled = false;
    redraw();
  });
  stop.addEventListener("click", async () => {
    await end();
    status.textContent = "Not tracing.";
  });
  pageCleanups.push(() => { end(); });
  every(TRACE_POLL_MS, () => poll().catch(() => {}));
}
