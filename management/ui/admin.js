/*
 * Warren management UI: the Admin page — users, virtual hosts, permissions, topic permissions
 * and policies, each listed with a delete (or clear) button that asks first, and an "Add" form
 * under its table, as RabbitMQ's Admin tab has. What the logged-in user may not see (users and
 * permissions need the administrator tag) shows the API's refusal in place of the table.
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

function splitTags(text) {
  return String(text || "").split(",").map((t) => t.trim()).filter(Boolean);
}

function onSubmit(form, what, call) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    let request;
    try {
      request = call(data);
    } catch (err) {
      toast(err.message, true);
      return;
    }
    await submitting(form, typeof what === "function" ? what(data) : what, request,
      renderAdmin.reloadAll);
  });
  return form;
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
  const users = adminSection("Users", "admin-users", [
    { title: "Name", value: (x) => x.name },
    { title: "Tags", value: (x) => (Array.isArray(x.tags) ? x.tags.join(", ") : x.tags) },
    { title: "", value: (x) => dangerButton("Delete", "delete-user", `Delete user ${x.name}?`,
      `User ${x.name} deleted`, () => api(`/api/users/${enc(x.name)}`, { method: "DELETE" }),
      reload) },
  ], "/api/users", userForm);

  const vhostForm = onSubmit(el("form", { class: "stack card", id: "add-vhost-form" },
    el("h2", { style: "margin-top: 0" }, "Add a new virtual host"),
    field("Name", { name: "name", id: "vhost-name", required: true }),
    field("Description", { name: "description", id: "vhost-description" }),
    field("Tags", { name: "tags", id: "vhost-tags", placeholder: "comma separated" }),
    selectField("Default queue type", { name: "queue_type", id: "vhost-queue-type" },
      [["", "(undefined)"], ["classic", "Classic"], ["quorum", "Quorum"],
        ["stream", "Stream"]], ""),
    el("div", {}, el("button", { type: "submit", id: "add-vhost" }, "Add virtual host"))),
  (data) => `Virtual host ${data.get("name")} added`, (data) => {
    const body = { description: data.get("description"), tags: splitTags(data.get("tags")) };
    if (data.get("queue_type")) body.defaultqueuetype = data.get("queue_type");
    return () => api(`/api/vhosts/${enc(data.get("name"))}`, { method: "PUT", body });
  });
  const vhosts = adminSection("Virtual hosts", "admin-vhosts", [
    { title: "Name", value: (x) => x.name },
    { title: "Description", value: (x) => x.description || "" },
    { title: "Tags", value: (x) => (x.tags || []).join(", ") },
    { title: "Messages", num: true, value: (x) => fmtNumber(x.messages || 0) },
    { title: "", value: (x) => dangerButton("Delete", "delete-vhost",
      `Delete virtual host ${x.name} and everything in it?`, `Virtual host ${x.name} deleted`,
      () => api(`/api/vhosts/${enc(x.name)}`, { method: "DELETE" }), reload) },
  ], "/api/vhosts", vhostForm);

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

  const definition = argumentsEditor("policy-definition", POLICY_HINTS);
  const policyForm = onSubmit(el("form", { class: "stack card", id: "add-policy-form" },
    el("h2", { style: "margin-top: 0" }, "Add / update a policy"),
    el("label", {}, "Virtual host", vhostSelect({ name: "vhost", id: "policy-vhost" })),
    field("Name", { name: "name", id: "policy-name", required: true }),
    field("Pattern", { name: "pattern", id: "policy-pattern", required: true,
      placeholder: "^amq." }),
    selectField("Apply to", { name: "apply_to", id: "policy-apply-to" },
      [["all", "Exchanges and queues"], ["exchanges", "Exchanges"], ["queues", "Queues"]],
      "all"),
    field("Priority", { name: "priority", id: "policy-priority", type: "number", value: 0 }),
    el("label", {}, "Definition", definition),
    el("div", {}, el("button", { type: "submit", id: "add-policy" }, "Add / update policy"))),
  (data) => `Policy ${data.get("name")} set`, (data) => {
    const body = { pattern: data.get("pattern"), definition: definition.value(),
      priority: Number(data.get("priority")) || 0, "apply-to": data.get("apply_to") };
    return async () => {
      await api(`/api/policies/${enc(data.get("vhost"))}/${enc(data.get("name"))}`,
        { method: "PUT", body });
      definition.clear();
    };
  });
  const policies = adminSection("Policies", "admin-policies", [
    { title: "Virtual host", value: (x) => x.vhost },
    { title: "Name", value: (x) => x.name },
    { title: "Pattern", value: (x) => x.pattern },
    { title: "Apply to", value: (x) => x["apply-to"] },
    { title: "Definition", value: (x) => JSON.stringify(x.definition) },
    { title: "Priority", num: true, value: (x) => x.priority },
    { title: "", value: (x) => dangerButton("Delete", "delete-policy",
      `Delete policy ${x.name}?`, `Policy ${x.name} deleted`,
      () => api(`/api/policies/${enc(x.vhost)}/${enc(x.name)}`, { method: "DELETE" }), reload) },
  ], "/api/policies", policyForm);

  const sections = [users, vhosts, permissions, topicPermissions, policies];
  main.append(el("h1", {}, "Admin"), ...sections);
  renderAdmin.reloadAll = async () => {
    if (token !== renderToken) return;
    await Promise.all([...sections.map((section) => section.load()),
      ...[...main.querySelectorAll("select.vhost-select")].map((select) => select.refresh())]);
  };
  await renderAdmin.reloadAll();
}
