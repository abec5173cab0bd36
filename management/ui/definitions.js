/*
 * Warren management UI: the overview page's "Export definitions" and "Import definitions", as
 * RabbitMQ's: export downloads GET /api/definitions (or one vhost's) as a JSON file named as
 * RabbitMQ names it; import uploads a chosen file to POST /api/definitions (or one vhost's), which
 * applies all of it or nothing and answers why when it refuses.
 */
"use strict";

/** RabbitMQ's suggested file name: the node name with "_" for "@", then the date unpadded
 * (rabbit_myhost_2026-12-5.json). */
function definitionsFileName(node) {
  const now = new Date();
  return `${(node || "warren").replace("@", "_")}_${now.getFullYear()}-${now.getMonth() + 1}-` +
    `${now.getDate()}.json`;
}

function definitionsPath(vhost) {
  return vhost ? `/api/definitions/${enc(vhost)}` : "/api/definitions";
}

/** The two cards at the bottom of the overview page. */
function definitionsCards() {
  const fileName = el("input", { name: "filename", id: "export-filename",
    value: definitionsFileName() });
  let edited = false;
  fileName.addEventListener("input", () => { edited = true; });
  api("/api/overview").then((overview) => {
    if (!edited) fileName.value = definitionsFileName(overview.node);
  }).catch(() => {});
  const exportForm = el("form", { class: "stack", id: "export-form" },
    el("label", {}, "Virtual host", vhostSelect({ name: "vhost", id: "export-vhost" }, "All")),
    el("label", {}, "Filename for download", fileName),
    el("div", {}, el("button", { type: "submit", id: "export-definitions" },
      "Download broker definitions")));
  exportForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const vhost = new FormData(exportForm).get("vhost");
    try {
      const document_ = await api(definitionsPath(vhost));
      const blob = new Blob([JSON.stringify(document_, null, 2)], { type: "application/json" });
      const link = el("a", { href: URL.createObjectURL(blob),
        download: fileName.value || definitionsFileName(null) });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
      toast("Definitions downloaded.");
    } catch (err) {
      toast(`Export failed: ${err.message}`, true);
    }
  });

  const file = el("input", { type: "file", name: "file", id: "import-file",
    accept: ".json,application/json", required: true });
  const importForm = el("form", { class: "stack", id: "import-form" },
    el("label", {}, "Definitions file", file),
    el("label", {}, "Virtual host", vhostSelect({ name: "vhost", id: "import-vhost" }, "All")),
    el("div", {}, el("button", { type: "submit", id: "import-definitions" },
      "Upload broker definitions")));
  importForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    if (!chosen) return;
    const vhost = new FormData(importForm).get("vhost");
    let document_;
    try {
      document_ = JSON.parse(await chosen.text());
    } catch (err) {
      toast(`${chosen.name} is not JSON: ${err.message}`, true);
      return;
    }
    await submitting(importForm, "Definitions imported", () => api(definitionsPath(vhost),
      { method: "POST", body: document_ }));
  });
  return el("div", { class: "grid2", style: "margin-top: 16px" },
    el("div", { class: "card" }, el("h2", { style: "margin-top: 0" }, "Export definitions"),
      exportForm),
    el("div", { class: "card" }, el("h2", { style: "margin-top: 0" }, "Import definitions"),
      importForm));
}
