// The admin console: keys (create, list, search, edit, revoke), usage (by day, model and
// key), and the models' replicas and fair queues (sharing.js), refreshed live while the
// console is open.

import { api } from "./api.js";
import { drawDays } from "./chart.js";
import { t } from "./i18n.js";
import { Sharing } from "./sharing.js";

const $ = (id) => document.getElementById(id);
const LIMITS = ["rpm", "tpm", "max_concurrency", "budget_tokens"];

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function percent(rate) {
  return `${(rate * 100).toFixed(1)}%`;
}

export class Console {
  constructor() {
    this.keys = [];
    this.models = [];
    this.sharing = new Sharing();
    this.timer = null;
    this.wired = false;
  }

  async open() {
    if (!this.wired) this.wire();
    this.wired = true;
    await Promise.all([this.loadKeys(), this.loadUsage(), this.loadModels(), this.loadChoices(),
                       this.sharing.load()]);
    clearInterval(this.timer);
    this.timer = setInterval(() => {
      this.loadModels().catch(() => {});
      this.sharing.load();
    }, 2000);
  }

  close() {
    clearInterval(this.timer);
    this.timer = null;
  }

  wire() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
    $("key-search").addEventListener("input", () => this.renderKeys());
    $("key-copy").addEventListener("click", async () => {
      const secret = $("key-secret-value").textContent;
      try {
        await navigator.clipboard.writeText(secret);
      } catch {
        getSelection().selectAllChildren($("key-secret-value"));  // copy by hand, then
      }
      $("key-copied").textContent = t("keys.copied");
    });
    $("usage-days").addEventListener("change", () => this.loadUsage());
    document.addEventListener("tram:language", () => {
      if (this.timer) {
        this.renderKeys();
        this.loadUsage();
        this.renderModels();
        this.sharing.render();
      }
    });
  }

  async loadChoices() {
    const models = await api("/v1/models");
    const box = $("key-models");
    box.querySelectorAll("label").forEach((label) => label.remove());
    for (const model of models.data) {
      const label = document.createElement("label");
      label.className = "check";
      const box_ = document.createElement("input");
      box_.type = "checkbox";
      box_.value = model.id;
      label.append(box_, ` ${model.id}`);
      box.append(label);
    }
  }

  async create() {
    $("keys-error").textContent = "";
    const number = (id) => (Number($(id).value) > 0 ? Number($(id).value) : undefined);
    const models = [...$("key-models").querySelectorAll("input:checked")].map((box) => box.value);
    const body = {
      name: $("key-name").value.trim(), owner: $("key-owner").value.trim() || undefined,
      models: models.length ? models : undefined, rpm: number("key-rpm"),
      tpm: number("key-tpm"), max_concurrency: number("key-concurrency"),
      budget_tokens: number("key-budget"),
    };
    if (body.budget_tokens) body.budget_period = $("key-period").value;
    try {
      const made = await api("/admin/keys", { method: "POST", body });
      $("key-secret-value").textContent = made.key;  // shown once, never stored by the page
      $("key-copied").textContent = "";
      $("key-secret").hidden = false;
      $("key-form").reset();
      $("key-copy").focus();
      await this.loadKeys();
    } catch (error) {
      $("keys-error").textContent = error.message;
    }
  }

  async loadKeys() {
    this.keys = (await api("/admin/keys")).data;
    this.renderKeys();
  }

  limitsText(key) {
    const parts = LIMITS.filter((name) => key[name]).map((name) =>
      name === "budget_tokens" ? `${name}=${key[name]}/${t(`keys.${key.budget_period}`)}`
        : `${name}=${key[name]}`);
    return parts.length ? parts.join(" ") : t("keys.none");
  }

  renderKeys() {
    const query = $("key-search").value.trim().toLowerCase();
    const rows = this.keys.filter((key) => !query ||
      [key.id, key.name, key.owner ?? ""].some((text) => text.toLowerCase().includes(query)));
    $("keys-table").tBodies[0].replaceChildren(...rows.map((key) => {
      const tr = document.createElement("tr");
      tr.dataset.keyId = key.id;
      tr.append(cell(key.name), cell(key.owner ?? "—"), cell(t(`status.${key.status}`)),
                cell(key.models ? key.models.join(", ") : t("keys.all")),
                cell(this.limitsText(key)));
      const actions = document.createElement("td");
      if (key.status === "active") {
        const edit = document.createElement("button");
        edit.type = "button";
        edit.className = "secondary";
        edit.textContent = t("keys.edit");
        edit.setAttribute("aria-label", t("keys.editing", { name: key.name }));
        edit.addEventListener("click", () => this.edit(tr, key));
        const revoke = document.createElement("button");
        revoke.type = "button";
        revoke.className = "danger";
        revoke.textContent = t("keys.revoke");
        revoke.addEventListener("click", () => this.revoke(key));
        actions.append(edit, revoke);
      }
      tr.append(actions);
      return tr;
    }));
  }

  edit(tr, key) {
    const form = document.createElement("form");
    form.className = "inline-edit";
    form.setAttribute("aria-label", t("keys.editing", { name: key.name }));
    const fields = {};
    for (const [name, label] of [["rpm", "keys.rpm"], ["tpm", "keys.tpm"],
      ["max_concurrency", "keys.concurrency"], ["budget_tokens", "keys.budget"]]) {
      const wrap = document.createElement("label");
      const input = document.createElement("input");
      input.type = "number";
      input.min = "0";
      input.name = name;
      input.value = key[name] ?? "";
      wrap.append(t(label), input);
      fields[name] = input;
      form.append(wrap);
    }
    const models = document.createElement("label");
    const modelsInput = document.createElement("input");
    modelsInput.name = "models";
    modelsInput.value = key.models ? key.models.join(", ") : "";
    models.append(t("keys.modelsShort"), modelsInput);
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "primary";
    save.textContent = t("keys.save");
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "secondary";
    cancel.textContent = t("keys.cancel");
    cancel.addEventListener("click", () => this.renderKeys());
    form.append(models, save, cancel);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {};
      for (const [name, input] of Object.entries(fields)) {
        body[name] = input.value === "" || Number(input.value) === 0 ? null : Number(input.value);
      }
      const names = modelsInput.value.split(",").map((name) => name.trim()).filter(Boolean);
      body.models = names.length ? names : null;
      try {
        await api(`/admin/keys/${encodeURIComponent(key.id)}`, { method: "PATCH", body });
        await this.loadKeys();
      } catch (error) {
        $("keys-error").textContent = error.message;
      }
    });
    const td = document.createElement("td");
    td.colSpan = 6;
    td.append(form);
    tr.replaceChildren(td);
    fields.rpm.focus();
  }

  async revoke(key) {
    if (!confirm(t("keys.confirmRevoke", { name: key.name }))) return;
    try {
      await api(`/admin/keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
      await this.loadKeys();
    } catch (error) {
      $("keys-error").textContent = error.message;
    }
  }

  async loadUsage() {
    const days = $("usage-days").value;
    const [byDay, byModel, byKey] = await Promise.all(["day", "model", "key"].map((by) =>
      api(`/admin/usage?by=${by}&days=${days}`)));
    drawDays($("usage-chart"), [...byDay.data].sort((a, b) => (a.day < b.day ? -1 : 1)));
    $("usage-models").tBodies[0].replaceChildren(...byModel.data.map((row) => {
      const tr = document.createElement("tr");
      tr.append(cell(row.model ?? "—"), cell(row.requests), cell(row.total_tokens),
                cell(percent(row.error_rate)));
      return tr;
    }));
    $("usage-keys").tBodies[0].replaceChildren(...byKey.data.slice(0, 10).map((row) => {
      const tr = document.createElement("tr");
      tr.append(cell(row.name ?? row.key ?? "—"), cell(row.owner ?? "—"), cell(row.requests),
                cell(row.total_tokens), cell(percent(row.error_rate)));
      return tr;
    }));
  }

  async loadModels() {
    this.models = (await api("/admin/models")).data;
    this.renderModels();
  }

  renderModels() {
    const rows = [];
    for (const model of this.models) {
      for (const replica of model.replicas) {
        const tr = document.createElement("tr");
        tr.className = replica.healthy ? "ok" : "bad";
        tr.append(cell(model.id), cell(replica.url),
                  cell(t(replica.healthy ? "models.healthy" : "models.unhealthy")),
                  cell(t(`circuit.${replica.circuit}`)), cell(replica.in_flight));
        rows.push(tr);
      }
    }
    $("models-table").tBodies[0].replaceChildren(...rows);
  }
}
