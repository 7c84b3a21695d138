// The playground: a multi-turn chat with any model this key may use, streamed as it comes,
// with images, thinking, the code for the conversation, and each answer's tokens and speed.

import { api, stream } from "./api.js";
import { t } from "./i18n.js";

const $ = (id) => document.getElementById(id);

export class Playground {
  constructor() {
    this.history = [];  // [{role, content}] as sent to the API
    this.pending = [];  // images for the next message: {name, url, local}
    this.controller = null;
    this.wired = false;
  }

  async start(me) {
    // Wired first: the form is there (its tab too) while the models load, and must never post.
    if (!this.wired) this.wire();
    this.wired = true;
    const models = await api("/v1/models");
    const select = $("pg-model");
    select.replaceChildren(...models.data.map((model) => new Option(model.id, model.id)));
    this.updateCode();
  }

  reset() {
    this.controller?.abort();
    this.history = [];
    this.pending = [];
    $("pg-messages").replaceChildren();
    $("pg-images").replaceChildren();
    $("pg-empty").hidden = false;
    $("pg-error").textContent = "";
    this.updateCode();
  }

  wire() {
    $("pg-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    $("pg-input").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    $("pg-stop").addEventListener("click", () => this.controller?.abort());
    $("pg-clear").addEventListener("click", () => this.reset());
    $("pg-temperature").addEventListener("input", (event) => {
      $("pg-temperature-value").textContent = event.target.value;
      this.updateCode();
    });
    for (const id of ["pg-model", "pg-system", "pg-max-tokens", "pg-thinking"]) {
      $(id).addEventListener("change", () => this.updateCode());
    }
    $("pg-file").addEventListener("change", (event) => {
      this.addFiles(event.target.files);
      event.target.value = "";
    });
    $("pg-add-url").addEventListener("click", () => this.addUrl());
    const composer = $("pg-form");
    composer.addEventListener("dragover", (event) => event.preventDefault());
    composer.addEventListener("drop", (event) => {
      event.preventDefault();
      this.addFiles(event.dataTransfer.files);
    });
    $("pg-input").addEventListener("paste", (event) => {
      const files = [...event.clipboardData.items].filter((item) => item.kind === "file")
        .map((item) => item.getAsFile());
      if (files.length) {
        event.preventDefault();
        this.addFiles(files);
      }
    });
    document.addEventListener("tram:language", () => this.renderImages());
  }

  addFiles(files) {
    for (const file of files) {
      if (!file.type.startsWith("image/")) {
        $("pg-error").textContent = t("pg.notImage", { name: file.name });
        continue;
      }
      const reader = new FileReader();
      reader.onload = () => {
        this.pending.push({ name: file.name, url: reader.result, local: true });
        this.renderImages();
      };
      reader.readAsDataURL(file);
    }
  }

  addUrl() {
    const input = $("pg-image-url");
    const url = input.value.trim();
    if (!url || !input.checkValidity()) return;
    // Not loaded here: the page talks to this gateway only. The gateway fetches it, safely.
    this.pending.push({ name: url, url, local: false });
    input.value = "";
    this.renderImages();
  }

  renderImages() {
    const box = $("pg-images");
    box.replaceChildren(...this.pending.map((image, index) => {
      const figure = document.createElement("figure");
      figure.className = "thumb";
      if (image.local) {
        const img = document.createElement("img");
        img.src = image.url;
        img.alt = image.name;
        figure.append(img);
      } else {
        const chip = document.createElement("span");
        chip.className = "url-chip";
        chip.textContent = t("pg.imageFromUrl", { url: image.url });
        figure.append(chip);
      }
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", t("pg.removeImage", { name: image.name }));
      remove.addEventListener("click", () => {
        this.pending.splice(index, 1);
        this.renderImages();
      });
      figure.append(remove);
      return figure;
    }));
  }

  request(stream = true) {
    const system = $("pg-system").value.trim();
    const body = {
      model: $("pg-model").value,
      messages: [...(system ? [{ role: "system", content: system }] : []), ...this.history],
      temperature: Number($("pg-temperature").value),
      max_tokens: Number($("pg-max-tokens").value) || undefined,
      chat_template_kwargs: { enable_thinking: $("pg-thinking").checked },
    };
    if (stream) {
      body.stream = true;
      body.stream_options = { include_usage: true };
    }
    return body;
  }

  bubble(role, label) {
    const item = document.createElement("li");
    item.className = `message ${role}`;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = label;
    item.append(who);
    $("pg-messages").append(item);
    $("pg-empty").hidden = true;
    return item;
  }

  async send() {
    const text = $("pg-input").value.trim();
    if (this.controller || (!text && !this.pending.length)) return;
    $("pg-error").textContent = "";
    const images = this.pending;
    const content = images.length
      ? [...(text ? [{ type: "text", text }] : []),
         ...images.map((image) => ({ type: "image_url", image_url: { url: image.url } }))]
      : text;
    this.history.push({ role: "user", content });
    const mine = this.bubble("user", t("pg.you"));
    const said = document.createElement("p");
    said.textContent = text;
    mine.append(said);
    for (const image of images.filter((image) => image.local)) {
      const img = document.createElement("img");
      img.src = image.url;
      img.alt = image.name;
      img.className = "sent-image";
      mine.append(img);
    }
    $("pg-input").value = "";
    this.pending = [];
    this.renderImages();
    this.updateCode();
    await this.answer();
  }

  async answer() {
    const reply = this.bubble("assistant", t("pg.assistant"));
    const thinking = document.createElement("details");
    thinking.className = "reasoning";
    thinking.hidden = true;
    const summary = document.createElement("summary");
    summary.textContent = t("pg.reasoning");
    const thought = document.createElement("p");
    thinking.append(summary, thought);
    const said = document.createElement("p");
    said.className = "answer";
    const stats = document.createElement("p");
    stats.className = "stats";
    reply.append(thinking, said, stats);

    this.controller = new AbortController();
    $("pg-stop").hidden = false;
    $("pg-send").disabled = true;
    const started = performance.now();
    let first = null;
    let deltas = 0;
    let usage = null;
    try {
      await stream("/v1/chat/completions", this.request(), (chunk) => {
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices?.[0]?.delta;
        if (!delta) return;
        const reasoning = delta.reasoning ?? delta.reasoning_content;
        if (reasoning) {
          thinking.hidden = false;
          thought.textContent += reasoning;
        }
        if (delta.content) said.textContent += delta.content;
        if (reasoning || delta.content) {
          first ??= performance.now();
          deltas += 1;
        }
      }, this.controller.signal);
    } catch (error) {
      if (error.name === "AbortError") {
        stats.textContent = t("pg.stopped");
      } else {
        $("pg-error").textContent = error.message;  // the API's own message
      }
    } finally {
      this.controller = null;
      $("pg-stop").hidden = true;
      $("pg-send").disabled = false;
    }
    if (said.textContent) this.history.push({ role: "assistant", content: said.textContent });
    if (first !== null && !stats.textContent) {
      const tokens = usage?.completion_tokens ?? deltas;
      const seconds = Math.max((performance.now() - first) / 1000, 0.001);
      stats.textContent = t("pg.stats", {
        tokens, ttft: Math.round(first - started), rate: (tokens / seconds).toFixed(1),
      });
      stats.dataset.tokens = String(tokens);
    }
    this.updateCode();
    $("pg-input").focus();
  }

  updateCode() {
    const body = this.request(false);
    // Images as data URLs would fill the page: shortened, marked as such.
    const shown = JSON.parse(JSON.stringify(body), (key, value) =>
      typeof value === "string" && value.startsWith("data:") && value.length > 80
        ? `${value.slice(0, 40)}…(${value.length} characters)` : value);
    const json = JSON.stringify(shown, null, 2);
    const base = `${location.origin}/v1`;
    $("pg-curl").textContent = `curl -X POST ${base}/chat/completions \\\n` +
      `  -H "Authorization: Bearer $TRAM_API_KEY" \\\n` +
      `  -H "Content-Type: application/json" \\\n  -d '${json.replaceAll("'", "'\\''")}'`;
    const { model, messages, ...rest } = shown;
    const extra = { ...rest };
    delete extra.chat_template_kwargs;
    const args = Object.entries(extra).filter(([, value]) => value !== undefined)
      .map(([name, value]) => `    ${name}=${pyJson(value)},`).join("\n");
    $("pg-python").textContent = [
      "import os", "from openai import OpenAI", "",
      `client = OpenAI(base_url="${base}", api_key=os.environ["TRAM_API_KEY"])`,
      "answer = client.chat.completions.create(",
      `    model=${JSON.stringify(model)},`,
      `    messages=${pyJson(messages)},`,
      args,
      `    extra_body={"chat_template_kwargs": ${pyJson(body.chat_template_kwargs)}},`,
      ")", "print(answer.choices[0].message.content)",
    ].filter((line) => line !== "").join("\n").replace("OpenAI\n", "OpenAI\n\n");
  }
}

// A Python literal of a JSON value (True/False/None; JSON's string escapes are Python's).
function pyJson(value, depth = 1) {
  const pad = "    ".repeat(depth + 1);
  const end = "    ".repeat(depth);
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((item) => pad + pyJson(item, depth + 1)).join(",\n")},\n${end}]`;
  }
  if (typeof value === "object") {
    const entries = Object.entries(value);
    if (!entries.length) return "{}";
    return `{\n${entries.map(([k, v]) => `${pad}${JSON.stringify(k)}: ${pyJson(v, depth + 1)}`)
      .join(",\n")},\n${end}}`;
  }
  return JSON.stringify(value);
}
