// Metrics dashboard: each `metrics` event updates the tiles and the SVG chart of the last 60
// CPU and memory readings. The chart is built with DOM calls (no markup from event data).
import { parseJson, startDemo } from "./page.js";

const SVG = "http://www.w3.org/2000/svg";
const POINTS = 60;
const W = 600;
const H = 220;
const PAD = { left: 40, right: 10, top: 10, bottom: 24 };

const chart = document.getElementById("chart");
const summary = document.getElementById("chart-summary");
const history = { cpu: [], memory: [] };

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

const x = (i) => PAD.left + (i * (W - PAD.left - PAD.right)) / (POINTS - 1);
const y = (v) => PAD.top + ((100 - v) * (H - PAD.top - PAD.bottom)) / 100;

// The frame: grid lines at 0, 25, 50, 75 and 100 %.
for (const v of [0, 25, 50, 75, 100]) {
  chart.append(svg("line", { class: "grid-line", x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v) }));
  const label = svg("text", { class: "axis-label", x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end" });
  label.textContent = `${v}%`;
  chart.append(label);
}
const axis = svg("text", { class: "axis-label", x: W - PAD.right, y: H - 6, "text-anchor": "end" });
axis.textContent = "now";
chart.append(axis);
const lines = {
  cpu: svg("polyline", { class: "series cpu", points: "" }),
  memory: svg("polyline", { class: "series memory", points: "" }),
};
chart.append(lines.cpu, lines.memory);

function draw() {
  for (const [name, values] of Object.entries(history)) {
    const offset = POINTS - values.length;
    lines[name].setAttribute("points", values.map((v, i) => `${x(i + offset).toFixed(1)},${y(v).toFixed(1)}`).join(" "));
  }
}

function tile(id, text) {
  document.getElementById(id).textContent = text;
}

const number = (v, digits = 1) => (Number.isFinite(Number(v)) ? Number(v).toFixed(digits) : "–");

const { chrome } = startDemo({
  topics: ["urn:herald:demo:metrics"],
  types: ["metrics"],
  onEvent(event) {
    const m = parseJson(event.data);
    if (!m || typeof m !== "object") return false;
    tile("m-cpu", `${number(m.cpu)} %`);
    tile("m-memory", `${number(m.memory)} %`);
    tile("m-temperature", `${number(m.temperature)} °C`);
    tile("m-humidity", `${number(m.humidity, 0)} %`);
    tile("m-subscribers", number(m.subscribers, 0));
    tile("m-position", number(m.position, 0));
    for (const name of ["cpu", "memory"]) {
      const v = Math.max(0, Math.min(100, Number(m[name]) || 0));
      history[name].push(v);
      if (history[name].length > POINTS) history[name].shift();
    }
    draw();
    summary.textContent = `Latest: CPU ${number(m.cpu)} %, memory ${number(m.memory)} %, over the last ${history.cpu.length} readings.`;
    chrome.announce(`CPU ${number(m.cpu, 0)} percent, temperature ${number(m.temperature)} degrees`, "metrics", 30000);
    return true;
  },
});
