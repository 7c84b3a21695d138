// Batches: the signed-in key's batches (the Batch API, /v1/batches) with their progress, and
// for the master key and admin keys every key's (/admin/batches), refreshed while shown.

import { api } from "./api.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const LIVE = new Set(["validating", "in_progress", "finalizing", "cancelling"]);

function cell(content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content); else td.textContent = content;
  return td;
}

function when(stamp) {
  return stamp ? new Date(stamp * 1000).toLocaleString() : "—";
}

export class Batches {
  constructor() {
    this.timer = null;
    this.admin = false;
    this.wired = false;
    this.data = [];
  }

  async open(me) {
    this.admin = Boolean(me && me.is_admin);
    $("batches-all-wrap").hidden = !this.admin;
    if (!this.wired) {
      this.wired = true;
      $("batches-all").addEventListener("change", () => this.load());
      document.addEventListener("tram:language", () => {
        if (this.timer) this.render();
      });
    }
    await this.load();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.load().catch(() => {}), 2000);
  }

  close() {
    clearInterval(this.timer);
    this.timer = null;
  }

  everyKey() {
    return this.admin && $("batches-all").checked;
  }

  async load() {
    try {
      const path = this.everyKey() ? "/admin/batches?limit=100" : "/v1/batches?limit=100";
      this.data = (await api(path)).data;
      $("batches-error").textContent = "";
    } catch (error) {
      $("batches-error").textContent = error.message;
    }
    this.render();
  }

  progress(batch) {
    const counts = batch.request_counts;
    const done = counts.completed + counts.failed;
    const wrap = document.createElement("div");
    const bar = document.createElement("progress");
    bar.max = Math.max(counts.total, 1);
    bar.value = done;
    bar.setAttribute("aria-label", t("batches.progressOf", { id: batch.id }));
    const text = document.createElement("span");
    text.textContent = t("batches.counts", { done, total: counts.total, failed: counts.failed });
    wrap.append(bar, " ", text);
    return wrap;
  }

  render() {
    const every = this.everyKey();
    $("batches-key-col").hidden = !every;
    $("batches-empty").hidden = this.data.length > 0;
    $("batches-table").tBodies[0].replaceChildren(...this.data.map((batch) => {
      const tr = document.createElement("tr");
      tr.dataset.batchId = batch.id;
      tr.className = batch.status === "failed" ? "bad" : LIVE.has(batch.status) ? "live" : "";
      const key = cell(batch.key_id ?? "");
      key.hidden = !every;
      tr.append(cell(batch.id), key, cell(batch.endpoint),
                cell(t(`batchStatus.${batch.status}`)), cell(this.progress(batch)),
                cell(when(batch.created_at)));
      return tr;
    }));
  }
}
