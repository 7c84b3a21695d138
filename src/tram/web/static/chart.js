// A bar chart of requests by day (SVG, drawn here: no chart library to load), each bar
// labelled for screen readers; tokens shown as the bar's title and in the list beside it.

import { t } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";

export function drawDays(container, rows) {
  container.replaceChildren();
  if (!rows.length) {
    const empty = document.createElement("p");
    empty.className = "hint";
    empty.textContent = t("usage.none");
    container.append(empty);
    return;
  }
  const width = 600;
  const height = 160;
  const most = Math.max(...rows.map((row) => row.requests), 1);
  const step = width / rows.length;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 20}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", t("usage.byDay"));
  rows.forEach((row, index) => {
    const bar = document.createElementNS(SVG, "rect");
    const tall = Math.max(2, (row.requests / most) * height);
    const wide = Math.min(step * 0.7, 40);  // a lone day is a bar, not a wall
    bar.setAttribute("x", String(index * step + (step - wide) / 2));
    bar.setAttribute("y", String(height - tall));
    bar.setAttribute("width", String(wide));
    bar.setAttribute("height", String(tall));
    bar.setAttribute("class", row.errors ? "bar has-errors" : "bar");
    const title = document.createElementNS(SVG, "title");
    title.textContent = t("usage.bar", { day: row.day, requests: row.requests,
                                          tokens: row.total_tokens });
    bar.append(title);
    svg.append(bar);
  });
  const first = document.createElementNS(SVG, "text");
  first.setAttribute("x", "0");
  first.setAttribute("y", String(height + 16));
  first.textContent = rows[0].day;
  const last = document.createElementNS(SVG, "text");
  last.setAttribute("x", String(width));
  last.setAttribute("y", String(height + 16));
  last.setAttribute("text-anchor", "end");
  last.textContent = rows[rows.length - 1].day;
  svg.append(first, last);
  const list = document.createElement("ul");
  list.className = "visually-hidden";
  for (const row of rows) {
    const item = document.createElement("li");
    item.textContent = t("usage.bar", { day: row.day, requests: row.requests,
                                        tokens: row.total_tokens });
    list.append(item);
  }
  container.append(svg, list);
}
