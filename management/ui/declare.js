/*
 * Warren management UI: declaring and deleting queues, exchanges and bindings.
 *
 * The "Add a new queue" and "Add a new exchange" forms of the list pages, the delete buttons of
 * the queue and exchange pages, the bind / unbind forms of both (a queue is bound from an
 * exchange; an exchange binds to a queue or to another exchange) and the exchange page's publish
 * form. Everything goes through the same /api calls RabbitMQ's UI makes.
 */
"use strict";

/** The "Add a new queue" form of the queue list; `after` reloads the list. */
function addQueueForm(after) {
  const args = argumentsEditor("queue-args", QUEUE_ARGUMENT_HINTS.classic);
  const durable = selectField("Durability", { name: "durable", id: "queue-durable" },
    [["true", "Durable"], ["false", "Transient"]], "true");
  const autoDelete = selectField("Auto delete", { name: "auto_delete", id: "queue-auto-delete" },
    [["false", "No"], ["true", "Yes"]], "false");
  const type = selectField("Type", { name: "type", id: "queue-type" },
    [["classic", "Classic"], ["quorum", "Quorum"], ["stream", "Stream"]], "classic");
  const form = el("form", { class: "stack", id: "add-queue-form" },
    type,
    el("label", {}, "Virtual host", vhostSelect({ name: "vhost", id: "queue-vhost" })),
    field("Name", { name: "name", id: "queue-name-input", required: true }),
    durable, autoDelete,
    el("label", {}, "Arguments", args),
    el("div", {}, el("button", { type: "submit", id: "add-queue" }, "Add queue")));
  const typeSelect = type.querySelector("select");
  typeSelect.addEventListener("change", () => {
    // quorum queues and streams are durable and never auto-deleted: RabbitMQ hides both choices
    const replicated = typeSelect.value !== "classic";
    durable.hidden = replicated;
    autoDelete.hidden = replicated;
    args.setHints(QUEUE_ARGUMENT_HINTS[typeSelect.value]);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const arguments_ = args.valueOrToast();
    if (arguments_ === null) return;
    const queueType = data.get("type");
    if (queueType !== "classic") arguments_["x-queue-type"] = queueType;
    const replicated = queueType !== "classic";
    const vhost = data.get("vhost");
    const name = data.get("name");
    const ok = await submitting(form, `Queue ${name} added`, () => api(
      `/api/queues/${enc(vhost)}/${enc(name)}`, { method: "PUT", body: {
        durable: replicated || data.get("durable") === "true",
        auto_delete: !replicated && data.get("auto_delete") === "true",
        arguments: arguments_ } }), after);
    if (ok) {
      args.clear();
      typeSelect.dispatchEvent(new Event("change"));
    }
  });
  return formSection("Add a new queue", form);
}

/** The "Add a new exchange" form of the exchange list. */
function addExchangeForm(after) {
  const args = argumentsEditor("exchange-args", EXCHANGE_ARGUMENT_HINTS);
  const form = el("form", { class: "stack", id: "add-exchange-form" },
    el("label", {}, "Virtual host", vhostSelect({ name: "vhost", id: "exchange-vhost" })),
    field("Name", { name: "name", id: "exchange-name-input", required: true }),
    selectField("Type", { name: "type", id: "exchange-type" },
      ["direct", "fanout", "headers", "topic"], "direct"),
    selectField("Durability", { name: "durable", id: "exchange-durable" },
      [["true", "Durable"], ["false", "Transient"]], "true"),
    selectField("Auto delete", { name: "auto_delete", id: "exchange-auto-delete" },
      [["false", "No"], ["true", "Yes"]], "false"),
    selectField("Internal", { name: "internal", id: "exchange-internal" },
      [["false", "No"], ["true", "Yes"]], "false"),
    el("label", {}, "Arguments", args),
    el("div", {}, el("button", { type: "submit", id: "add-exchange" }, "Add exchange")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const arguments_ = args.valueOrToast();
    if (arguments_ === null) return;
    const name = data.get("name");
    const ok = await submitting(form, `Exchange ${name} added`, () => api(
      `/api/exchanges/${enc(data.get("vhost"))}/${enc(name)}`, { method: "PUT", body: {
        type: data.get("type"), durable: data.get("durable") === "true",
        auto_delete: data.get("auto_delete") === "true",
        internal: data.get("internal") === "true", arguments: arguments_ } }), after);
    if (ok) args.clear();
  });
  return formSection("Add a new exchange", form);
}

/** A "Delete this queue/exchange" card whose button asks first, then goes back to the list. */
function deleteSection(what, name, path, listHash) {
  const button = el("button", { type: "button", class: "danger", id: `delete-${what}` },
    `Delete ${what}`);
  button.addEventListener("click", async () => {
    if (!confirmed(`Delete ${what} ${name}?`)) return;
    const ok = await submitting(null, `${what[0].toUpperCase()}${what.slice(1)} ${name} deleted`,
      () => api(path, { method: "DELETE" }));
    if (ok) location.hash = listHash;
  });
  return el("div", { class: "card" }, el("h2", { style: "margin-top: 0" }, `Delete this ${what}`),
    button);
}

function bindingPath(vhost, binding) {
  const kind = binding.destination_type === "queue" ? "q" : "e";
  return `/api/bindings/${enc(vhost)}/e/${enc(binding.source)}/${kind}/` +
    `${enc(binding.destination)}/${enc(binding.properties_key)}`;
}

/** An "Unbind" button for a binding row (none for the default exchange's implicit binding). */
function unbindButton(vhost, binding, after) {
  if (binding.source === "") return el("span", { class: "muted" }, "(implicit)");
  return el("button", { type: "button", class: "secondary small unbind", onclick: async () => {
    if (!confirmed(`Unbind ${binding.destination} from ${exchangeLabel(binding.source)}?`)) {
      return;
    }
    await submitting(null, "Binding removed", () => api(bindingPath(vhost, binding),
      { method: "DELETE" }), after);
  } }, "Unbind");
}

/**
 * The bind form of a queue page (`end` "queue": the person names the source exchange) or an
 * exchange page (`end` "exchange": the person names a destination queue or exchange).
 */
function bindForm(vhost, end, name, after) {
  const args = argumentsEditor(`bind-args-${end}`, []);
  const names = el("datalist", { id: `bind-names-${end}` });
  const target = end === "queue"
    ? [field("From exchange", { name: "other", id: "bind-source", required: true,
      list: names.id, autocomplete: "off" })]
    : [selectField("To", { name: "kind", id: "bind-kind" },
      [["q", "To queue"], ["e", "To exchange"]], "q"),
    field("Name", { name: "other", id: "bind-destination", required: true, list: names.id,
      autocomplete: "off" })];
  const suggest = async (kind) => {
    // the names the person can pick from: the vhost's exchanges, or its first 500 queues
    const found = kind === "e"
      ? (await api(`/api/exchanges/${enc(vhost)}?columns=name`)).map((x) => x.name)
        .filter((x) => x !== "")
      : (await api(`/api/queues/${enc(vhost)}?page=1&page_size=500&columns=name`)).items
        .map((x) => x.name);
    names.replaceChildren(...found.map((x) => el("option", { value: x })));
  };
  const kindSelect = end === "queue" ? null : target[0].querySelector("select");
  if (kindSelect) kindSelect.addEventListener("change", () => suggest(kindSelect.value)
    .catch(() => {}));
  suggest(end === "queue" ? "e" : "q").catch(() => {});
  const form = el("form", { class: "stack", id: "bind-form" }, names, ...target,
    field("Routing key", { name: "routing_key", id: "bind-routing-key" }),
    el("label", {}, "Arguments", args),
    el("div", {}, el("button", { type: "submit", id: "bind-submit" }, "Bind")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const arguments_ = args.valueOrToast();
    if (arguments_ === null) return;
    const other = data.get("other");
    const path = end === "queue"
      ? `/api/bindings/${enc(vhost)}/e/${enc(other)}/q/${enc(name)}`
      : `/api/bindings/${enc(vhost)}/e/${enc(name)}/${data.get("kind")}/${enc(other)}`;
    const ok = await submitting(form, "Binding added", () => api(path, { method: "POST",
      body: { routing_key: data.get("routing_key"), arguments: arguments_ } }), after);
    if (ok) args.clear();
  });
  return form;
}

/** The exchange page's "Publish message" form (routing key, headers, properties, payload). */
function exchangePublishForm(vhost, name, after) {
  const form = el("form", { class: "stack", id: "exchange-publish-form" },
    field("Routing key", { name: "routing_key", id: "xpublish-routing-key" }),
    selectField("Delivery mode", { name: "delivery_mode" },
      [["1", "1 – non-persistent"], ["2", "2 – persistent"]], "1"),
    field("Headers (JSON object, optional)", { name: "headers", id: "xpublish-headers",
      placeholder: "{\"key\": \"value\"}" }),
    field("Properties (JSON object, optional)", { name: "properties", id: "xpublish-properties",
      placeholder: "{\"content_type\": \"text/plain\"}" }),
    el("label", {}, "Payload", el("textarea", { name: "payload", id: "xpublish-payload" })),
    el("div", {}, el("button", { type: "submit", id: "xpublish-submit" }, "Publish message")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    let properties;
    try {
      properties = JSON.parse(String(data.get("properties") || "").trim() || "{}");
      const headers = String(data.get("headers") || "").trim();
      if (headers) properties.headers = JSON.parse(headers);
    } catch (err) {
      toast("Headers and properties must be JSON objects", true);
      return;
    }
    properties.delivery_mode = Number(data.get("delivery_mode"));
    try {
      const result = await api(`/api/exchanges/${enc(vhost)}/${enc(name)}/publish`, {
        method: "POST", body: { properties, routing_key: data.get("routing_key"),
          payload: data.get("payload"), payload_encoding: "string" } });
      toast(result.routed ? "Message published." : "Message published but not routed.",
        !result.routed);
      if (after) await after();
    } catch (err) {
      toast(`Publish failed: ${err.message}`, true);
    }
  });
  return form;
}
