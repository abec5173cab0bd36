/*
 * Warren management UI: the charts of the queue and exchange pages, drawn from the broker's
 * sample history.
 *
 * The page asks for the last ten minutes in 5 s steps (RabbitMQ's `lengths_age`/`lengths_incr`
 * and `msg_rates_age`/`msg_rates_incr` query parameters) and draws the `*_details.samples` the
 * broker returns: queue lengths as they are, message counters as the rate between two samples.
 * So a chart opened now shows what happened before the tab was open. A broker that returns no
 * samples gets the tab's own history of the current figures instead. drawChart() is app.js's.
 */
"use strict";

const HISTORY_QUERY = "lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5";

const QUEUE_CHARTS = [
  { id: "queue-chart-depth", title: "Queued messages", unit: "", series: [
    { key: "messages_ready", label: "Ready", color: "#ca8a04", kind: "length" },
    { key: "messages_unacknowledged", label: "Unacked", color: "#7c3aed", kind: "length" },
    { key: "messages", label: "Total", color: "#64748b", kind: "length" },
  ] },
  { id: "queue-chart-rates", title: "Message rates", unit: "/s", series: [
    { key: "publish", label: "Publish", color: "#e8590c", kind: "rate" },
    { key: "deliver_get", label: "Deliver / get", color: "#2563eb", kind: "rate" },
    { key: "ack", label: "Ack", color: "#16a34a", kind: "rate" },
  ] },
];

const EXCHANGE_CHARTS = [
  { id: "exchange-chart-rates", title: "Message rates", unit: "/s", series: [
    { key: "publish_in", label: "Publish (in)", color: "#e8590c", kind: "rate" },
    { key: "publish_out", label: "Publish (out)", color: "#2563eb", kind: "rate" },
  ] },
];

/** The samples of one series of an API object, oldest first: [{time, value}]. */
function seriesSamples(object, s) {
  const holder = s.kind === "length" ? object : object.message_stats || {};
  const samples = ((holder[`${s.key}_details`] || {}).samples || [])
    .map((x) => ({ time: x.timestamp, value: x.sample }))
    .sort((a, b) => a.time - b.time);
  if (s.kind === "length") return samples;
  // counters: the rate over each step between two samples
  const rates = [];
  for (let i = 1; i < samples.length; i += 1) {
    const seconds = (samples[i].time - samples[i - 1].time) / 1000;
    if (seconds > 0) {
      rates.push({ time: samples[i].time,
        value: Math.max(0, samples[i].value - samples[i - 1].value) / seconds });
    }
  }
  return rates;
}

/** The current figure of a series, for the tab's own history when the broker sends none. */
function currentValue(object, s) {
  if (s.kind === "length") return object[s.key] || 0;
  return ((object.message_stats || {})[`${s.key}_details`] || {}).rate || 0;
}

/** Merge series by timestamp into drawChart's history rows {time, key: value}. */
function historyRows(object, series) {
  const byTime = new Map();
  for (const s of series) {
    for (const { time, value } of seriesSamples(object, s)) {
      if (!byTime.has(time)) byTime.set(time, { time });
      byTime.get(time)[s.key] = value;
    }
  }
  const rows = [...byTime.values()].sort((a, b) => a.time - b.time);
  // a series that has no sample at a time (a counter that never moved) draws 0 there
  for (const row of rows) for (const s of series) if (row[s.key] === undefined) row[s.key] = 0;
  return rows;
}

/** Cards with one canvas per chart spec; the element's update(object) redraws them. */
function historyCharts(kind, specs) {
  const local = []; // the tab's own history, used only when the broker returns no samples
  const canvases = specs.map((spec) => el("canvas", { id: spec.id }));
  const wrapper = el("div", { class: "charts", id: `${kind}-charts`, style: "margin-top: 16px" },
    specs.map((spec, i) => el("div", { class: "card chart" }, el("h2", {}, spec.title),
      canvases[i], legend(spec.series))));
  wrapper.update = (object) => {
    const row = { time: Date.now() };
    specs.forEach((spec) => spec.series.forEach((s) => { row[s.key] = currentValue(object, s); }));
    local.push(row);
    if (local.length > HISTORY_SAMPLES) local.shift();
    specs.forEach((spec, i) => {
      const fromBroker = historyRows(object, spec.series);
      const rows = fromBroker.length ? fromBroker : local;
      canvases[i].dataset.source = fromBroker.length ? "broker" : "tab";
      canvases[i].dataset.points = rows.length;
      canvases[i].dataset.max = Math.max(0, ...rows.flatMap((r) =>
        spec.series.map((s) => r[s.key])));
      drawChart(canvases[i], rows, spec.series, spec.unit);
    });
  };
  return wrapper;
}
