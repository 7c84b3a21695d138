// The console's Sharing panel: each model's fair queue (GET /admin/sharing): its capacity, what
// it started and what waits by class, and each key sharing it with its class, weight and share.
// The console refreshes it with the replicas while it is open.

import { api } from "./api.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function capacityText(model) {
  if (model.capacity === null) return t("sharing.unbounded");
  if (model.bounded_by === "engine_queue") return t("sharing.byEngines", { count: model.capacity });
  return String(model.capacity);
}

export class Sharing {
  constructor() {
    this.view = null;
  }

  async load() {
    try {
      this.view = await api("/admin/sharing");
      $("sharing-error").textContent = "";
    } catch (error) {
      $("sharing-error").textContent = error.message;
    }
    this.render();
  }

  render() {
    if (!this.view) return;
    const { priorities, queue, data } = this.view;
    const paced = queue.class_prompts?.batch;
    const perKey = queue.key_prompts;
    const rate = queue.prompt_tokens_per_second;
    $("sharing-settings").textContent = queue.enabled ? t("sharing.settings", {
      interactive: priorities.interactive, batch: priorities.batch,
      wInteractive: queue.weights.interactive, wBatch: queue.weights.batch,
    }) + (paced ? t("sharing.paced", { n: paced, rate }) : "")
      + (perKey ? t("sharing.keyPaced", { n: perKey, rate }) : "")
      : t("sharing.off");
    $("sharing-models").tBodies[0].replaceChildren(...data.map((model) => {
      const tr = document.createElement("tr");
      tr.dataset.model = model.id;
      tr.append(cell(model.id), cell(capacityText(model)), cell(model.in_flight),
                cell(model.waiting.interactive ?? 0), cell(model.waiting.batch ?? 0));
      return tr;
    }));
    const rows = data.flatMap((model) => model.keys.map((key) => {
      const tr = document.createElement("tr");
      tr.dataset.model = model.id;
      tr.dataset.keyId = key.id;
      tr.append(cell(model.id), cell(key.name ?? key.id), cell(t(`class.${key.class}`)),
                cell(key.weight), cell(`${(key.share * 100).toFixed(1)}%`), cell(key.waiting));
      return tr;
    }));
    $("sharing-keys").tBodies[0].replaceChildren(...rows);
    $("sharing-empty").hidden = rows.length > 0;
  }
}
