/*
 * Warren management UI: the building blocks of its forms.
 *
 * A labelled field, a checkbox, a select, a collapsible "Add a new ..." card, the arguments
 * editor (key = value rows with a type, and the argument hints RabbitMQ's UI offers under it),
 * the confirmation asked before a delete or purge, and the call that submits a form to the API
 * and reports the outcome in the toast. Used by app.js, declare.js, admin.js and details.js;
 * el(), api() and toast() come from app.js (loaded after this file, called only at run time).
 */
"use strict";

/** A labelled input: field("Name", {name: "name", required: true}). */
function field(label, attrs, hint) {
  return el("label", {}, label, el("input", attrs), hint ? el("span", { class: "hint" }, hint)
    : null);
}

function checkbox(label, attrs) {
  return el("label", { class: "check" }, el("input", { type: "checkbox", ...attrs }), label);
}

/** A labelled select of [value, text] pairs (or plain values). */
function selectField(label, attrs, options, selected) {
  return el("label", {}, label, el("select", attrs, options.map((option) => {
    const [value, text] = Array.isArray(option) ? option : [option, option];
    return el("option", { value, selected: value === selected }, text);
  })));
}

/** A card with a heading that opens and closes its form, as RabbitMQ's "Add a new queue". */
function formSection(title, form, open) {
  return el("details", { class: "card form-section", open: open || false },
    el("summary", {}, title), form);
}

/** Ask before something is deleted or emptied; the person can cancel. */
function confirmed(question) {
  return window.confirm(question);
}

/**
 * Run an API call for a form: a toast says what happened, the form is reset on success and
 * `after` (a reload) runs. Returns whether it worked.
 */
async function submitting(form, what, call, after) {
  const button = form && form.querySelector("button[type=submit]");
  if (button) button.disabled = true;
  try {
    await call();
    toast(`${what}.`);
    if (form) form.reset();
    if (after) await after();
    return true;
  } catch (err) {
    toast(`${what} failed: ${err.message}`, true);
    return false;
  } finally {
    if (button) button.disabled = false;
  }
}

/* ---------------------------------------------------------------- arguments */

const ARGUMENT_TYPES = [["string", "String"], ["number", "Number"], ["boolean", "Boolean"],
  ["list", "List"]];

/** The x-arguments RabbitMQ 3.10's "Add a new queue" form offers, per queue type. */
const QUEUE_ARGUMENT_HINTS = {
  classic: [
    ["x-expires", "Auto expire", "number"], ["x-message-ttl", "Message TTL", "number"],
    ["x-overflow", "Overflow behaviour", "string"],
    ["x-single-active-consumer", "Single active consumer", "boolean"],
    ["x-dead-letter-exchange", "Dead letter exchange", "string"],
    ["x-dead-letter-routing-key", "Dead letter routing key", "string"],
    ["x-max-length", "Max length", "number"], ["x-max-length-bytes", "Max length bytes", "number"],
    ["x-max-priority", "Maximum priority", "number"], ["x-queue-mode", "Lazy mode", "string"],
    ["x-queue-version", "Version", "number"],
    ["x-queue-master-locator", "Master locator", "string"],
  ],
  quorum: [
    ["x-expires", "Auto expire", "number"], ["x-message-ttl", "Message TTL", "number"],
    ["x-overflow", "Overflow behaviour", "string"],
    ["x-single-active-consumer", "Single active consumer", "boolean"],
    ["x-dead-letter-exchange", "Dead letter exchange", "string"],
    ["x-dead-letter-routing-key", "Dead letter routing key", "string"],
    ["x-max-length", "Max length", "number"], ["x-max-length-bytes", "Max length bytes", "number"],
    ["x-delivery-limit", "Delivery limit", "number"],
    ["x-quorum-initial-group-size", "Initial cluster size", "number"],
    ["x-dead-letter-strategy", "Dead letter strategy", "string"],
    ["x-queue-leader-locator", "Leader locator", "string"],
  ],
  stream: [
    ["x-max-length-bytes", "Max length bytes", "number"],
    ["x-max-age", "Max time retention", "string"],
    ["x-stream-max-segment-size-bytes", "Max segment size in bytes", "number"],
    ["x-initial-cluster-size", "Initial cluster size", "number"],
    ["x-queue-leader-locator", "Leader locator", "string"],
  ],
};

/** What each hint means, shown as its tooltip (RabbitMQ's help texts, shortened). */
const ARGUMENT_HELP = {
  "x-expires": "How long a queue can be unused for before it is automatically deleted (ms).",
  "x-message-ttl": "How long a message published to a queue can live before it is discarded (ms).",
  "x-overflow": "What happens when the queue is full: drop-head, reject-publish or " +
    "reject-publish-dlx.",
  "x-single-active-consumer": "Only one consumer at a time consumes from the queue; the others " +
    "take over when it goes.",
  "x-dead-letter-exchange": "Exchange to which rejected or expired messages are republished.",
  "x-dead-letter-routing-key": "Replacement routing key for dead-lettered messages.",
  "x-max-length": "How many (ready) messages a queue can contain before it starts to drop them " +
    "from its head.",
  "x-max-length-bytes": "Total body size of ready messages a queue can contain before it starts " +
    "to drop them from its head.",
  "x-max-priority": "Maximum number of priority levels for the queue to support.",
  "x-queue-mode": "Set to \"lazy\" to keep as many messages as possible on disk.",
  "x-queue-version": "Set the queue version (1 or 2).",
  "x-queue-master-locator": "Rule to choose the node the queue's master is placed on.",
  "x-delivery-limit": "The number of allowed unsuccessful delivery attempts.",
  "x-quorum-initial-group-size": "Initial number of members of the quorum queue.",
  "x-initial-cluster-size": "Initial number of members of the stream.",
  "x-dead-letter-strategy": "at-most-once or at-least-once.",
  "x-queue-leader-locator": "client-local or balanced.",
  "x-max-age": "How long messages are kept in the stream (e.g. 7D, 12h, 30m).",
  "x-stream-max-segment-size-bytes": "Total segment size for stream segments on disk.",
  "alternate-exchange": "Messages this exchange cannot route go to the alternate exchange.",
};

const EXCHANGE_ARGUMENT_HINTS = [["alternate-exchange", "Alternate exchange", "string"]];

/**
 * Rows of key = value (type) inputs that always end with an empty row, with hint links under
 * them that add a known argument. editor.value() gives the typed object or throws with a reason.
 */
function argumentsEditor(id, hints) {
  const rows = el("div", { class: "arg-rows" });
  const hintBox = el("div", { class: "hints" });
  const addRow = (key, type) => {
    const row = el("div", { class: "arg-row" },
      el("input", { class: "arg-key", placeholder: "key", value: key || "" }), " = ",
      el("input", { class: "arg-value", placeholder: "value" }),
      el("select", { class: "arg-type" }, ARGUMENT_TYPES.map(([value, text]) =>
        el("option", { value, selected: value === (type || "string") }, text))));
    row.querySelector(".arg-key").addEventListener("input", ensureEmptyRow);
    rows.append(row);
    return row;
  };
  function ensureEmptyRow() {
    const keys = [...rows.querySelectorAll(".arg-key")];
    if (!keys.length || keys[keys.length - 1].value) addRow();
  }
  const editor = el("div", { class: "args", id }, rows, hintBox);
  editor.setHints = (list) => {
    hintBox.replaceChildren(list.length ? "Add " : "", ...list.flatMap(([key, label, type], i) => [
      i ? " | " : "",
      el("a", { href: "#", class: "hint-link", title: `${key}: ${ARGUMENT_HELP[key] || ""}`,
        dataset: { arg: key }, onclick: (event) => {
          event.preventDefault();
          const empty = [...rows.querySelectorAll(".arg-row")]
            .find((row) => !row.querySelector(".arg-key").value);
          const row = empty || addRow();
          row.querySelector(".arg-key").value = key;
          row.querySelector(".arg-type").value = type;
          row.querySelector(".arg-value").focus();
          ensureEmptyRow();
        } }, label),
    ]));
  };
  editor.value = () => {
    const result = {};
    for (const row of rows.querySelectorAll(".arg-row")) {
      const key = row.querySelector(".arg-key").value.trim();
      if (!key) continue;
      result[key] = typedValue(key, row.querySelector(".arg-value").value,
        row.querySelector(".arg-type").value);
    }
    return result;
  };
  editor.clear = () => { rows.replaceChildren(); addRow(); };
  editor.setHints(hints || []);
  addRow();
  return editor;
}

function typedValue(key, text, type) {
  if (type === "number") {
    const number = Number(text);
    if (text.trim() === "" || Number.isNaN(number)) throw new Error(`${key} must be a number`);
    return number;
  }
  if (type === "boolean") {
    if (!["true", "false"].includes(text.trim())) {
      throw new Error(`${key} must be true or false`);
    }
    return text.trim() === "true";
  }
  if (type === "list") return text.split(",").map((item) => item.trim()).filter(Boolean);
  return text;
}

/** A select of the vhosts the user can see, filled from /api/vhosts; `allLabel` adds a first
 * choice of value "" (all vhosts). select.refresh() reloads the list, keeping the choice. */
function vhostSelect(attrs, allLabel) {
  const select = el("select", { ...attrs, class: "vhost-select" });
  const all = allLabel ? [el("option", { value: "" }, allLabel)] : [];
  select.append(...all);
  select.refresh = () => api("/api/vhosts").then((vhosts) => {
    const chosen = select.value;
    select.replaceChildren(...all, ...vhosts.map((v) => el("option", { value: v.name }, v.name)));
    if ([...select.options].some((option) => option.value === chosen)) select.value = chosen;
  }).catch(() => { if (!select.options.length) select.append(el("option", { value: "/" }, "/")); });
  select.refresh();
  return select;
}
