/*
 * Warren management UI: the Admin page — users, virtual hosts, permissions, topic permissions,
 * policies and operator policies, each listed with a delete (or clear) button that asks first,
 * and an "Add" form under its table, as RabbitMQ's Admin tab has; a user's or a vhost's "Edit"
 * opens its update form (RabbitMQ's "Update this user"). What the logged-in user may not see
 * (users and permissions need the administrator tag) shows the API's refusal in place of the
 * table.
 */
"use strict";

const USER_TAGS = ["administrator", "monitoring", "policymaker", "management", "impersonator"];

/** The policy keys RabbitMQ's "Add / update a policy" form offers as hints. */
const POLICY_HINTS = [
  ["max-length", "Max length", "number"], ["max-length-bytes", "Max length bytes", "number"],
  ["overflow", "Overflow behaviour", "string"], ["expires", "Auto expire", "number"],
  ["message-ttl", "Message TTL", "number"],
  ["dead-letter-exchange", "Dead letter exchange", "string"],
  ["dead-letter-routing-key", "Dead letter routing key", "string"],
  ["queue-mode", "Lazy mode", "string"], ["queue-version", "Version", "number"],
  ["delivery-limit", "Delivery limit", "number"], ["max-age", "Max age", "string"],
  ["alternate-exchange", "Alternate exchange", "string"],
];

/** The keys RabbitMQ 3.10.8's API takes in an operator policy (its form also offers
 * "Overflow behaviour", which its API refuses) and Warren runs. */
const OPERATOR_POLICY_HINTS = [
  ["max-length", "Max length", "number"], ["max-length-bytes", "Max length bytes", "number"],
  ["message-ttl", "Message TTL", "number"], ["expires", "Auto expire", "number"],
  ["delivery-limit", "Delivery limit", "number"],
];

/** A small button that asks `question`, then runs `call` and reloads. */
function dangerButton(label, className, question, what, call, after) {
  return el("button", { type: "button", class: `danger small ${className}`, onclick: async () => {
    if (!confirmed(question)) return;
    await submitting(null, what, call, after);
  } }, label);
}

/** One admin section: heading, table filled from `path`, and its add form. */
function adminSection(title, id, columns, path, form) {
  const table = makeTable(columns, `No ${title.toLowerCase()}`);
  table.id = `${id}-table`;
  const section = el("section", { id }, el("h2", {}, title), table, form || null);
  section.load = async () => {
    try {
      table.update(await api(path), (x) => ({ name: x.name || x.user || "" }));
    } catch (err) {
      table.querySelector("tbody").replaceChildren(el("tr", {}, el("td", {
        colspan: columns.length, class: "empty" }, err.message)));
    }
  };
  return section;
}

function tagInput(id, tags) {
  const input = el("input", { name: "tags", id, placeholder: "comma separated" });
  const hints = el("span", { class: "hint" }, "Set ", tags.flatMap((tag, i) => [i ? " | " : "",
    el("a", { href: "#", dataset: { tag }, onclick: (event) => {
      event.preventDefault();
      const current = input.value.split(",").map((t) => t.trim()).filter(Boolean);
      if (!current.includes(tag)) current.push(tag);
      input.value = current.join(", ");
    } }, tag)]));
  return el("label", {}, "Tags", input, hints);
}

/** A vhost's description, tags and, for a new one, default queue type (ids prefixed with
 * `prefix`): an existing vhost's type does not change (RabbitMQ 3.10.8 keeps it). */
function vhostFields(prefix, queueType = true) {
  const fields = [
    field("Description", { name: "description", id: `${prefix}-description` }),
    field("Tags", { name: "tags", id: `${prefix}-tags`, placeholder: "comma separated" }),
  ];
  if (queueType) {
    fields.push(selectField("Default queue type",
      { name: "queue_type", id: `${prefix}-queue-type` },
      [["", "(undefined)"], ["classic", "Classic"], ["quorum", "Quorum"],
        ["stream", "Stream"]], ""));
  }
  return fields;
}

/** The PUT /api/vhosts body of those fields (no default queue type: none sent). */
function vhostBody(data) {
  const body = { description: data.get("description"), tags: splitTags(data.get("tags")) };
  if (data.get("queue_type")) body.defaultqueuetype = data.get("queue_type");
  return body;
}

/** Tell the user why a form's input is refused; null, for onSubmit's `call`. */
function refuse(reason) {
  toast(reason, true);
  return null;
}

function splitTags(text) {
  return String(text || "").split(",").map((t) => t.trim()).filter(Boolean);
}

/** Submit `form` through the API call `call(data)` returns; null from `call` means the form
 * refused its input and has told the user why (as an arguments editor's valueOrToast). */
function onSubmit(form, what, call) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const request = call(data);
    if (request === null) return;
    await submitting(form, typeof what === "function" ? what(data) : what, request,
      renderAdmin.reloadAll);
  });
  return form;
}

/** A form card that stays hidden until an "Edit" button fills it; it hides again once the
 * update is made, or on "Cancel". */
function editCard(id, title, fields, submitLabel) {
  const heading = el("h2", { style: "margin-top: 0" });
  const cancel = el("button", { type: "button", class: "secondary", id: `${id}-cancel` },
    "Cancel");
  const form = el("form", { class: "stack card", id: `${id}-form`, hidden: true }, heading,
    ...fields, el("div", {}, el("button", { type: "submit", id }, submitLabel), " ", cancel));
  cancel.addEventListener("click", () => { form.hidden = true; });
  form.open = (name, fill) => {
    form.reset();
    form.dataset.name = name;
    heading.textContent = `${title} ${name}`;
    fill(form.elements);
    form.hidden = false;
    form.scrollIntoView({ block: "center" });
  };
  return form;
}

/** "Edit" in a list row: opens `card` for the row's object. */
function editButton(className, card, name, fill) {
  return el("button", { type: "button", class: `secondary small ${className}`,
    onclick: () => card.open(name, fill) }, "Edit");
}

/** The "Add / update" form and the list of policies (`operator`: of operator policies), as
 * RabbitMQ's Admin > Policies page has both. */
function policySection(operator) {
  const kind = operator ? "operator-policy" : "policy";
  const noun = operator ? "operator policy" : "policy";
  const path = operator ? "/api/operator-policies" : "/api/policies";
  const label = `${noun[0].toUpperCase()}${noun.slice(1)}`;
  const definition = argumentsEditor(`${kind}-definition`,
    operator ? OPERATOR_POLICY_HINTS : POLICY_HINTS);
  const applyTo = operator ? [["queues", "Queues"]]
    : [["all", "Exchanges and queues"], ["exchanges", "Exchanges"], ["queues", "Queues"]];
  const form = onSubmit(el("form", { class: "stack card", id: `add-${kind}-form` },
    el("h2", { style: "margin-top: 0" }, `Add / update ${operator ? "an" : "a"} ${noun}`),
    el("label", {}, "Virtual host", vhostSelect({ name: "vhost", id: `${kind}-vhost` })),
    field("Name", { name: "name", id: `${kind}-name`, required: true }),
    field("Pattern", { name: "pattern", id: `${kind}-pattern`, required: true,
      placeholder: "^amq." }),
    selectField("Apply to", { name: "apply_to", id: `${kind}-apply-to` }, applyTo,
      applyTo[0][0]),
    field("Priority", { name: "priority", id: `${kind}-priority`, type: "number", value: 0 }),
    el("label", {}, "Definition", definition),
    el("div", {}, el("button", { type: "submit", id: `add-${kind}` },
      `Add / update ${noun}`))),
  (data) => `${label} ${data.get("name")} set`, (data) => {
    const value = definition.valueOrToast();
    if (value === null) return null;
    const body = { pattern: data.get("pattern"), definition: value,
      priority: Number(data.get("priority")) || 0, "apply-to": data.get("apply_to") };
    return async () => {
      await api(`${path}/${enc(data.get("vhost"))}/${enc(data.get("name"))}`,
        { method: "PUT", body });
      definition.clear();
    };
  });
  return adminSection(operator ? "Operator policies" : "Policies",
    operator ? "admin-operator-policies" : "admin-policies", [
    { title: "Virtual host", value: (x) => x.vhost },
    { title: "Name", value: (x) => x.name },
    { title: "Pattern", value: (x) => x.pattern },
    { title: "Apply to", value: (x) => x["apply-to"] },
    { title: "Definition", value: (x) => JSON.stringify(x.definition) },
    { title: "Priority", num: true, value: (x) => x.priority },
    { title: "", value: (x) => dangerButton(operator ? "Clear" : "Delete",
      operator ? "clear-operator-policy" : "delete-policy",
      `${operator ? "Clear" : "Delete"} ${noun} ${x.name}?`,
      `${label} ${x.name} ${operator ? "cleared" : "deleted"}`,
      () => api(`${path}/${enc(x.vhost)}/${enc(x.name)}`, { method: "DELETE" }),
      renderAdmin.reloadAll) },
  ], path, form);
}

async function renderAdmin(args, token) {
  const reload = () => renderAdmin.reloadAll();
  const userForm = onSubmit(el("form", { class: "stack card", id: "add-user-form" },
    el("h2", { style: "margin-top: 0" }, "Add a user"),
    field("Username", { name: "name", id: "user-name", required: true }),
    field("Password", { name: "password", id: "user-password", type: "password" }),
    tagInput("user-tags", USER_TAGS),
    el("div", {}, el("button", { type: "submit", id: "add-user" }, "Add user"))),
  (data) => `User ${data.get("name")} added`, (data) => {
    // no password typed: a user who cannot log in with one (RabbitMQ's "No password")
    const body = { tags: splitTags(data.get("tags")).join(",") };
    if (data.get("password")) body.password = data.get("password");
    return () => api(`/api/users/${enc(data.get("name"))}`, { method: "PUT", body });
  });
  // RabbitMQ's "Update this user": a new password (typed twice) or none, and the tags
  const hasPassword = el("select", { name: "has_password", id: "update-user-has-password" },
    el("option", { value: "password" }, "Password"),
    el("option", { value: "none" }, "No password"));
  const passwords = el("div", { class: "stack" },
    field("New password", { name: "password", id: "update-user-password", type: "password" }),
    field("Confirm", { name: "password_confirm", id: "update-user-password-confirm",
      type: "password" }));
  const showPasswords = () => { passwords.hidden = hasPassword.value !== "password"; };
  hasPassword.addEventListener("change", showPasswords);
  const updateUser = onSubmit(editCard("update-user", "Update user", [
    el("label", {}, "Log in with", hasPassword), passwords,
    tagInput("update-user-tags", USER_TAGS)], "Update user"),
  () => `User ${updateUser.dataset.name} updated`, (data) => {
    const body = { tags: splitTags(data.get("tags")).join(",") };
    if (data.get("has_password") === "password") {
      if (!data.get("password")) return refuse("Please specify a password.");
      if (data.get("password") !== data.get("password_confirm")) {
        return refuse("Passwords do not match.");
      }
      body.password = data.get("password");
    }
    return async () => {
      await api(`/api/users/${enc(updateUser.dataset.name)}`, { method: "PUT", body });
      updateUser.hidden = true;
    };
  });
  const users = adminSection("Users", "admin-users", [
    { title: "Name", value: (x) => x.name },
    { title: "Tags", value: (x) => (Array.isArray(x.tags) ? x.tags.join(", ") : x.tags) },
    { title: "Can log in with password", value: (x) => (x.password_hash ? "yes" : "no") },
    { title: "", value: (x) => el("span", {}, editButton("edit-user", updateUser, x.name,
      (fields) => {
        fields.has_password.value = x.password_hash ? "password" : "none";
        showPasswords();
        fields.tags.value = (Array.isArray(x.tags) ? x.tags : splitTags(x.tags)).join(", ");
      }), " ", dangerButton("Delete", "delete-user", `Delete user ${x.name}?`,
      `User ${x.name} deleted`, () => api(`/api/users/${enc(x.name)}`, { method: "DELETE" }),
      reload)) },
  ], "/api/users", el("div", {}, updateUser, userForm));

  const vhostForm = onSubmit(el("form", { class: "stack card", id: "add-vhost-form" },
    el("h2", { style: "margin-top: 0" }, "Add a new virtual host"),
    field("Name", { name: "name", id: "vhost-name", required: true }),
    ...vhostFields("vhost"),
    el("div", {}, el("button", { type: "submit", id: "add-vhost" }, "Add virtual host"))),
  (data) => `Virtual host ${data.get("name")} added`, (data) => () => api(
    `/api/vhosts/${enc(data.get("name"))}`, { method: "PUT", body: vhostBody(data) }));
  // RabbitMQ 3.10.8 updates a vhost by adding it again under its name; this is that PUT (it
  // replaces description and tags, and keeps the default queue type)
  const updateVhost = onSubmit(editCard("update-vhost", "Update virtual host",
    vhostFields("update-vhost", false), "Update virtual host"),
  () => `Virtual host ${updateVhost.dataset.name} updated`, (data) => async () => {
    await api(`/api/vhosts/${enc(updateVhost.dataset.name)}`,
      { method: "PUT", body: vhostBody(data) });
    updateVhost.hidden = true;
  });
  const vhosts = adminSection("Virtual hosts", "admin-vhosts", [
    { title: "Name", value: (x) => x.name },
    { title: "Description", value: (x) => x.description || "" },
    { title: "Tags", value: (x) => (x.tags || []).join(", ") },
    { title: "Default queue type", value: (x) => x.default_queue_type || "" },
    { title: "Messages", num: true, value: (x) => fmtNumber(x.messages || 0) },
    { title: "", value: (x) => el("span", {}, editButton("edit-vhost", updateVhost, x.name,
      (fields) => {
        fields.description.value = x.description || "";
        fields.tags.value = (x.tags || []).join(", ");
      }), " ", dangerButton("Delete", "delete-vhost",
      `Delete virtual host ${x.name} and everything in it?`, `Virtual host ${x.name} deleted`,
      () => api(`/api/vhosts/${enc(x.name)}`, { method: "DELETE" }), reload)) },
  ], "/api/vhosts", el("div", {}, updateVhost, vhostForm));

  const permissionForm = onSubmit(el("form", { class: "stack card", id: "add-permission-form" },
    el("h2", { style: "margin-top: 0" }, "Set permission"),
    field("User", { name: "user", id: "permission-user", required: true }),
    el("label", {}, "Virtual host", vhostSelect({ name: "vhost", id: "permission-vhost" })),
    field("Configure regexp", { name: "configure", id: "permission-configure", value: ".*" }),
    field("Write regexp", { name: "write", id: "permission-write", value: ".*" }),
    field("Read regexp", { name: "read", id: "permission-read", value: ".*" }),
    el("div", {}, el("button", { type: "submit", id: "set-permission" }, "Set permission"))),
  "Permission set", (data) => () => api(
    `/api/permissions/${enc(data.get("vhost"))}/${enc(data.get("user"))}`, { method: "PUT",
      body: { configure: data.get("configure"), write: data.get("write"),
        read: data.get("read") } }));
  const permissions = adminSection("Permissions", "admin-permissions", [
    { title: "User", value: (x) => x.user },
    { title: "Virtual host", value: (x) => x.vhost },
    { title: "Configure", value: (x) => x.configure },
    { title: "Write", value: (x) => x.write },
    { title: "Read", value: (x) => x.read },
    { title: "", value: (x) => dangerButton("Clear", "clear-permission",
      `Clear ${x.user}'s permissions on ${x.vhost}?`, "Permission cleared",
      () => api(`/api/permissions/${enc(x.vhost)}/${enc(x.user)}`, { method: "DELETE" }),
      reload) },
  ], "/api/permissions", permissionForm);

  const topicForm = onSubmit(el("form", { class: "stack card", id: "add-topic-permission-form" },
    el("h2", { style: "margin-top: 0" }, "Set topic permission"),
    field("User", { name: "user", id: "topic-user", required: true }),
    el("label", {}, "Virtual host", vhostSelect({ name: "vhost", id: "topic-vhost" })),
    field("Exchange", { name: "exchange", id: "topic-exchange", value: "amq.topic",
      required: true }),
    field("Write regexp", { name: "write", id: "topic-write", value: ".*" }),
    field("Read regexp", { name: "read", id: "topic-read", value: ".*" }),
    el("div", {}, el("button", { type: "submit", id: "set-topic-permission" },
      "Set topic permission"))),
  "Topic permission set", (data) => () => api(
    `/api/topic-permissions/${enc(data.get("vhost"))}/${enc(data.get("user"))}`,
    { method: "PUT", body: { exchange: data.get("exchange"), write: data.get("write"),
      read: data.get("read") } }));
  const topicPermissions = adminSection("Topic permissions", "admin-topic-permissions", [
    { title: "User", value: (x) => x.user },
    { title: "Virtual host", value: (x) => x.vhost },
    { title: "Exchange", value: (x) => x.exchange },
    { title: "Write", value: (x) => x.write },
    { title: "Read", value: (x) => x.read },
    { title: "", value: (x) => dangerButton("Clear", "clear-topic-permission",
      `Clear ${x.user}'s topic permissions on ${x.vhost}?`, "Topic permissions cleared",
      () => api(`/api/topic-permissions/${enc(x.vhost)}/${enc(x.user)}`, { method: "DELETE" }),
      reload) },
  ], "/api/topic-permissions", topicForm);

  const policies = policySection(false);
  const operatorPolicies = policySection(true);

  const sections = [users, vhosts, permissions, topicPermissions, policies,
    operatorPolicies];
  main.append(el("h1", {}, "Admin"), ...sections);
  renderAdmin.reloadAll = async () => {
    if (token !== renderToken) return;
    await Promise.all([...sections.map((section) => section.load()),
      ...[...main.querySelectorAll("select.vhost-select")].map((select) => select.refresh())]);
  };
  await renderAdmin.reloadAll();
}
