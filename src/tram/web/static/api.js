// Calls to this gateway only. The key lives in sessionStorage (this tab, until it closes):
// never in a URL, a cookie or localStorage, and never written into the page.

import { t } from "./i18n.js";

const KEY = "tram.key";

export function savedKey() {
  return sessionStorage.getItem(KEY);
}

export function saveKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(response) {
  let message = `HTTP ${response.status}`;
  let code = null;
  try {
    const body = await response.json();
    if (body && body.error) {
      message = body.error.message || message;  // the API's own words
      code = body.error.code || null;
    }
  } catch {
    // not JSON: keep the status
  }
  return new ApiError(response.status, message, code);
}

export async function api(path, { method = "GET", body, key = savedKey(), signal } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, signal, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, t("error.network"), null);
  }
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

// POST a streaming request; call onEvent with each `data:` payload parsed, until [DONE].
export async function stream(path, body, onEvent, signal) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST", signal, cache: "no-store",
      headers: { Authorization: `Bearer ${savedKey()}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, t("error.network"), null);
  }
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event.split("\n").filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart()).join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const parsed = JSON.parse(data);
      if (parsed.error) throw new ApiError(200, parsed.error.message, parsed.error.code);
      onEvent(parsed);
    }
  }
}
