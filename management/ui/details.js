/*
 * Warren management UI: connections and channels, listed and one by one.
 *
 * The connection page shows the client's properties, the connection's settings and data rates,
 * its channels, and a "Force close" form that sends a reason to the client (RabbitMQ's X-Reason
 * header). The channel page shows its prefetch, unacked count, confirm / transactional mode and
 * its consumers. consumerColumns() is also the queue page's consumer list.
 */
"use strict";

function connectionLink(name) {
  return el("a", { href: `#/connections/${enc(name)}` }, name);
}

function channelLink(name) {
  return el("a", { href: `#/channels/${enc(name)}` }, name);
}

function channelMode(x) {
  return [x.confirm && "confirm", x.transactional && "transactional"].filter(Boolean).join(", ");
}

function byteRate(x, key) {
  return `${fmtBytes((x[`${key}_details`] || {}).rate || 0)}/s`;
}

/** A <dl> of [label, value] pairs; values may be nodes; undefined values are left out. */
function propertyList(id, rows) {
  return el("dl", { class: "props", id }, rows.filter(([, value]) => value !== undefined)
    .flatMap(([label, value]) => [el("dt", {}, label),
      el("dd", {}, value instanceof Node ? value : String(value === null ? "" : value))]));
}

/** Columns of a consumer list (a queue's consumer_details, a channel's, /api/consumers). */
function consumerColumns() {
  return [
    { title: "Channel", value: (c) => channelLink((c.channel_details || {}).name || "") },
    { title: "Consumer tag", value: (c) => c.consumer_tag },
    { title: "Queue", value: (c) => el("a", { href:
      `#/queues/${enc(c.queue.vhost)}/${enc(c.queue.name)}` }, c.queue.name) },
    { title: "Ack required", value: (c) => (c.ack_required ? "●" : "○") },
    { title: "Exclusive", value: (c) => (c.exclusive ? "●" : "○") },
    { title: "Prefetch", num: true, value: (c) => fmtNumber(c.prefetch_count) },
    { title: "Active", value: (c) => (c.active ? "●" : "○") },
    { title: "Activity status", value: (c) => c.activity_status || "" },
    { title: "Arguments", value: (c) => JSON.stringify(c.arguments || {}) },
  ];
}

function renderConnections(args, token) {
  if (args.length) return renderConnection(args.join("/"), token);
  return listPage("Connections", "/api/connections", [
    { title: "Name", value: (x) => connectionLink(x.name) },
    { title: "Client", value: (x) => ((x.client_properties || {}).connection_name ||
      (x.client_properties || {}).product || "") },
    { title: "User", value: (x) => x.user },
    { title: "Virtual host", value: (x) => x.vhost },
    { title: "State", value: (x) => el("span", { class: `badge ${x.state || ""}` }, x.state) },
    { title: "Protocol", value: (x) => x.protocol },
    { title: "Channels", num: true, value: (x) => fmtNumber(x.channels) },
    { title: "From client", num: true, value: (x) => byteRate(x, "recv_oct") },
    { title: "To client", num: true, value: (x) => byteRate(x, "send_oct") },
  ], token, (x) => ({ name: x.name }));
}

async function renderConnection(name, token) {
  const base = `/api/connections/${enc(name)}`;
  const overview = el("div");
  const clientProps = el("div");
  const channels = makeTable([
    { title: "Channel", value: (x) => channelLink(x.name) },
    { title: "Mode", value: channelMode },
    { title: "Prefetch", num: true, value: (x) => fmtNumber(x.prefetch_count) },
    { title: "Unacked", num: true, value: (x) => fmtNumber(x.messages_unacknowledged) },
    { title: "Consumers", num: true, value: (x) => fmtNumber(x.consumer_count) },
    { title: "Publish", num: true, value: (x) => fmtRate(statRate(x, "publish")) },
    { title: "Deliver / get", num: true, value: (x) => fmtRate(statRate(x, "deliver_get")) },
    { title: "Ack", num: true, value: (x) => fmtRate(statRate(x, "ack")) },
  ], "No channels");
  const form = el("form", { class: "stack", id: "close-connection-form" },
    field("Reason", { name: "reason", id: "close-reason",
      value: "Closed via management plugin" }),
    el("div", {}, el("button", { type: "submit", class: "danger", id: "close-connection" },
      "Force close")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const reason = new FormData(form).get("reason");
    if (!confirmed(`Close connection ${name}?`)) return;
    const ok = await submitting(null, "Connection closed", () => api(base,
      { method: "DELETE", headers: { "X-Reason": reason } }));
    if (ok) location.hash = "#/connections";
  });
  main.append(
    el("p", {}, el("a", { href: "#/connections" }, "← Connections")),
    el("h1", {}, "Connection ", el("span", { id: "connection-name" }, name)),
    el("div", { class: "grid2" },
      el("div", { class: "card" }, el("h2", { style: "margin-top: 0" }, "Details"), overview),
      el("div", { class: "card" }, el("h2", { style: "margin-top: 0" }, "Client properties"),
        clientProps)),
    el("h2", {}, "Channels"), channels,
    el("div", { class: "card", style: "margin-top: 16px" },
      el("h2", { style: "margin-top: 0" }, "Close this connection"), form));
  const load = async () => {
    const [connection, list] = await Promise.all([api(base), api(`${base}/channels`)]);
    if (token !== renderToken) return;
    overview.replaceChildren(propertyList("connection-details", [
      ["User", connection.user], ["Virtual host", connection.vhost],
      ["State", connection.state], ["Protocol", connection.protocol],
      ["Client", `${connection.peer_host}:${connection.peer_port}`],
      ["Authentication", connection.auth_mechanism], ["TLS", connection.ssl ? "yes" : "no"],
      ["Heartbeat", `${connection.timeout}s`], ["Frame max", connection.frame_max],
      ["Channel limit", connection.channel_max],
      ["From client", byteRate(connection, "recv_oct")],
      ["To client", byteRate(connection, "send_oct")],
      ["Received", fmtBytes(connection.recv_oct)], ["Sent", fmtBytes(connection.send_oct)],
      ["Connected at", new Date(connection.connected_at).toLocaleString()],
    ]));
    const props = connection.client_properties || {};
    clientProps.replaceChildren(propertyList("client-properties", Object.entries(props)
      .map(([key, value]) => [key, typeof value === "object" ? JSON.stringify(value) : value])));
    channels.update(list);
  };
  await load();
  every(POLL_MS, () => load().catch(() => {}));
}

function renderChannels(args, token) {
  if (args.length) return renderChannel(args.join("/"), token);
  return listPage("Channels", "/api/channels", [
    { title: "Channel", value: (x) => channelLink(x.name) },
    { title: "User", value: (x) => x.user },
    { title: "Virtual host", value: (x) => x.vhost },
    { title: "Mode", value: channelMode },
    { title: "State", value: (x) => el("span", { class: `badge ${x.state || ""}` }, x.state) },
    { title: "Prefetch", num: true, value: (x) => fmtNumber(x.prefetch_count) },
    { title: "Consumers", num: true, value: (x) => fmtNumber(x.consumer_count) },
    { title: "Unacked", num: true, value: (x) => fmtNumber(x.messages_unacknowledged) },
    { title: "Publish", num: true, value: (x) => fmtRate(statRate(x, "publish")) },
    { title: "Deliver / get", num: true, value: (x) => fmtRate(statRate(x, "deliver_get")) },
    { title: "Ack", num: true, value: (x) => fmtRate(statRate(x, "ack")) },
  ], token, (x) => ({ name: x.name }));
}

async function renderChannel(name, token) {
  const base = `/api/channels/${enc(name)}`;
  const overview = el("div");
  const consumers = makeTable(consumerColumns(), "No consumers");
  main.append(
    el("p", {}, el("a", { href: "#/channels" }, "← Channels")),
    el("h1", {}, "Channel ", el("span", { id: "channel-name" }, name)),
    el("div", { class: "card" }, overview),
    el("h2", {}, "Consumers"), consumers);
  const load = async () => {
    const channel = await api(base);
    if (token !== renderToken) return;
    const connection = (channel.connection_details || {}).name;
    overview.replaceChildren(propertyList("channel-details", [
      ["Connection", connection ? connectionLink(connection) : ""],
      ["User", channel.user], ["Virtual host", channel.vhost], ["State", channel.state],
      ["Mode", channelMode(channel) || "none"],
      ["Prefetch count", channel.prefetch_count],
      ["Global prefetch count", channel.global_prefetch_count],
      ["Unacked", channel.messages_unacknowledged],
      ["Unconfirmed", channel.messages_unconfirmed],
      ["Consumers", channel.consumer_count],
      ["Publish", fmtRate(statRate(channel, "publish"))],
      ["Deliver / get", fmtRate(statRate(channel, "deliver_get"))],
      ["Ack", fmtRate(statRate(channel, "ack"))],
    ]));
    consumers.update(channel.consumer_details || []);
  };
  await load();
  every(POLL_MS, () => load().catch(() => {}));
}
