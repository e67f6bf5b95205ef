// Stock ticker: each `quotes` event ({quotes: [{symbol, price, change}]}) updates one row per
// symbol, green when the price went up and red when it went down (with an arrow and a word, so
// colour is not the only cue).
import { clock, el, parseJson, startDemo } from "./page.js";

const body = document.getElementById("quotes");
const updated = document.getElementById("updated");
const rows = new Map();

function row(symbol) {
  let cells = rows.get(symbol);
  if (cells) return cells;
  if (rows.size === 0) body.replaceChildren();
  const tr = el("tr");
  cells = {
    tr,
    symbol: el("td", { className: "symbol", text: symbol }),
    price: el("td", { className: "num price" }),
    change: el("td", { className: "num change" }),
    trend: el("td", { className: "trend" }),
  };
  tr.append(cells.symbol, cells.price, cells.change, cells.trend);
  body.append(tr);
  rows.set(symbol, cells);
  return cells;
}

function apply(quote) {
  const price = Number(quote.price);
  const change = Number(quote.change);
  if (!quote.symbol || !Number.isFinite(price) || !Number.isFinite(change)) return;
  const cells = row(String(quote.symbol));
  const direction = change > 0 ? "up" : change < 0 ? "down" : "flat";
  cells.tr.className = direction;
  cells.price.textContent = price.toFixed(2);
  cells.change.textContent = (change > 0 ? "+" : "") + change.toFixed(2);
  cells.trend.textContent = direction === "up" ? "▲ up" : direction === "down" ? "▼ down" : "= flat";
  // Restart the flash animation.
  void cells.tr.offsetWidth;
  cells.tr.classList.add("flash");
}

const { chrome } = startDemo({
  topics: ["urn:herald:demo:ticker"],
  types: ["quotes"],
  onEvent(event) {
    const data = parseJson(event.data);
    if (!data || !Array.isArray(data.quotes)) return false;
    for (const quote of data.quotes) apply(quote);
    updated.textContent = clock();
    const summary = data.quotes
      .slice(0, 5)
      .map((q) => `${q.symbol} ${Number(q.price).toFixed(2)}`)
      .join(", ");
    // A price a second is too much to hear; say the board every 20 seconds.
    chrome.announce(`Prices: ${summary}`, "prices", 20000);
    return true;
  },
});
