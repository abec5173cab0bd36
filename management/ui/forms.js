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
 * Run an API call for a form: a toast says `what` was done, or why it failed; the form is reset
 * on success and `after` (a reload) runs. Returns whether it worked.
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
    toast(`Failed: ${err.message}`, true); // the API's reason names the object
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

/** Each hint's help text, as RabbitMQ 3.10.8's UI shows it (its js/global.js HELP, as text). */
const ARGUMENT_HELP = {
  "x-expires": "How long a queue can be unused for before it is automatically deleted " +
    "(milliseconds). (Sets the \"x-expires\" argument.)",
  "x-message-ttl": "How long a message published to a queue can live before it is discarded " +
    "(milliseconds). (Sets the \"x-message-ttl\" argument.)",
  "x-overflow": "Sets the queue overflow behaviour. This determines what happens to messages " +
    "when the maximum length of a queue is reached. Valid values are drop-head, " +
    "reject-publish or reject-publish-dlx. The quorum queue type only supports drop-head and " +
    "reject-publish.",
  "x-single-active-consumer": "If set, makes sure only one consumer at a time consumes from " +
    "the queue and fails over to another registered consumer in case the active one is " +
    "cancelled or dies. (Sets the \"x-single-active-consumer\" argument.)",
  "x-dead-letter-exchange": "Optional name of an exchange to which messages will be " +
    "republished if they are rejected or expire. (Sets the \"x-dead-letter-exchange\" " +
    "argument.)",
  "x-dead-letter-routing-key": "Optional replacement routing key to use when a message is " +
    "dead-lettered. If this is not set, the message's original routing key will be used. " +
    "(Sets the \"x-dead-letter-routing-key\" argument.)",
  "x-max-length": "How many (ready) messages a queue can contain before it starts to drop " +
    "them from its head. (Sets the \"x-max-length\" argument.)",
  "x-max-length-bytes": "Total body size for ready messages a queue can contain before it " +
    "starts to drop them from its head. (Sets the \"x-max-length-bytes\" argument.)",
  "x-max-priority": "Maximum number of priority levels for the queue to support; if not set, " +
    "the queue will not support message priorities. (Sets the \"x-max-priority\" argument.)",
  "x-queue-mode": "Set the queue into lazy mode, keeping as many messages as possible on disk " +
    "to reduce RAM usage; if not set, the queue will keep an in-memory cache to deliver " +
    "messages as fast as possible. (Sets the \"x-queue-mode\" argument.)",
  "x-queue-version": "Set the queue version. Defaults to version 1. Version 1 has a " +
    "journal-based index that embeds small messages. Version 2 has a different index which " +
    "improves memory usage and performance in many scenarios, as well as a per-queue store " +
    "for messages that were previously embedded. (Sets the \"x-queue-version\" argument.)",
  "x-queue-master-locator": "Set the queue into master location mode, determining the rule by " +
    "which the queue master is located when declared on a cluster of nodes. (Sets the " +
    "\"x-queue-master-locator\" argument.)",
  "x-delivery-limit": "The number of allowed unsuccessful delivery attempts. Once a message " +
    "has been delivered unsuccessfully more than this many times it will be dropped or " +
    "dead-lettered, depending on the queue configuration.",
  "x-quorum-initial-group-size": "Set the queue initial cluster size.",
  "x-initial-cluster-size": "Set the queue initial cluster size.",
  "x-dead-letter-strategy": "Valid values are at-most-once or at-least-once. It defaults to " +
    "at-most-once. This setting is understood only by quorum queues. If at-least-once is set, " +
    "Overflow behaviour must be set to reject-publish. Otherwise, dead letter strategy will " +
    "fall back to at-most-once.",
  "x-max-age": "How long a message published to a stream queue can live before it is " +
    "discarded.",
  "x-stream-max-segment-size-bytes": "Total segment size for stream segments on disk. (Sets " +
    "the x-stream-max-segment-size-bytes argument.)",
  "x-queue-leader-locator": "Set the rule by which the queue leader is located when declared " +
    "on a cluster of nodes. Valid values are client-local (default) and balanced.",
  "alternate-exchange": "If messages to this exchange cannot otherwise be routed, send them " +
    "to the alternate exchange named here. (Sets the \"alternate-exchange\" argument.)",
};

/** The help of an x-argument, or of the policy key of the same meaning (`message-ttl`). */
function argumentHelp(key) {
  return ARGUMENT_HELP[key] || ARGUMENT_HELP[`x-${key}`] || key;
}

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
      el("a", { href: "#", class: "hint-link", title: argumentHelp(key),
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
  /** The typed object, or null once the user has been told why the arguments are refused. */
  editor.valueOrToast = () => {
    try {
      return editor.value();
    } catch (err) {
      toast(err.message, true);
      return null;
    }
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
