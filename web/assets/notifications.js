// Live notifications: each `notification` event ({title, body, level}) becomes a card at the
// top of the inbox.
import { clock, el, parseJson, startDemo } from "./page.js";

const MAX_SHOWN = 50;
const LEVELS = { success: "Success", info: "Info", warning: "Warning", error: "Error" };

const list = document.getElementById("notes");
const empty = document.getElementById("empty");
const count = document.getElementById("count");
let total = 0;

function show(note) {
  const level = Object.hasOwn(LEVELS, note.level) ? note.level : "info";
  const card = el(
    "li",
    { className: "note", attrs: { "data-level": level } },
    el("h3", { text: String(note.title || "Notification") }),
    el("p", { text: String(note.body || "") }),
    el(
      "p",
      { className: "meta" },
      el("span", { className: "badge", text: LEVELS[level], attrs: { "data-level": level } }),
      ` at ${clock()}`,
    ),
  );
  list.prepend(card);
  while (list.children.length > MAX_SHOWN) list.lastElementChild.remove();
  empty.hidden = true;
  total += 1;
  count.textContent = String(total);
}

const { chrome } = startDemo({
  topics: ["urn:herald:demo:notifications"],
  types: ["notification"],
  onEvent(event) {
    const note = parseJson(event.data);
    if (!note || typeof note !== "object") return false;
    show(note);
    chrome.announce(`${LEVELS[note.level] || "Info"}: ${note.title}. ${note.body || ""}`);
    return true;
  },
});

document.getElementById("clear").addEventListener("click", () => {
  list.replaceChildren();
  empty.hidden = false;
  total = 0;
  count.textContent = "0";
});
