// The hub page: subscribe to any topic selectors and watch events arrive, publish by hand.
import { LiveFeed, HUB_PATH } from "./live.js";
import { Chrome, clock, el } from "./page.js";

const MAX_ROWS = 500;
const DEMO_TYPES = ["message", "notification", "quotes", "progress", "complete", "error", "chat", "metrics"];

const $ = (id) => document.getElementById(id);
const subForm = $("sub-form");
const subTopics = $("sub-topics");
const subTypes = $("sub-types");
const subToken = $("sub-token");
const subLast = $("sub-last");
const subStart = $("sub-start");
const subStop = $("sub-stop");
const subUrl = $("sub-url");
const pubForm = $("pub-form");
const pubResult = $("pub-result");
const events = $("events");
const eventCount = $("event-count");

const chrome = new Chrome();
let feed = null;
let received = 0;

const lines = (text) => text.split("\n").map((s) => s.trim()).filter(Boolean);
const words = (text) => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);

function addRow(event) {
  const placeholder = events.querySelector("tr.placeholder");
  if (placeholder) placeholder.remove();
  const row = el(
    "tr",
    {},
    el("td", { className: "mono", text: clock() }),
    el("td", {}, el("span", { className: "type", text: event.type })),
    el("td", { className: "mono", text: event.id }),
    el("td", {}, el("pre", { text: event.data })),
  );
  events.prepend(row);
  while (events.children.length > MAX_ROWS) events.lastElementChild.remove();
  received += 1;
  eventCount.textContent = String(received);
  chrome.counted();
  chrome.announce(`${event.type} event received`, "event", 5000);
}

function subscribe() {
  unsubscribe();
  const topics = lines(subTopics.value);
  if (topics.length === 0) return;
  feed = new LiveFeed({
    topics,
    types: words(subTypes.value),
    token: subToken.value.trim(),
    lastEventId: subLast.value.trim(),
    onEvent: addRow,
    onState: chrome.onState,
  });
  chrome.bind(feed);
  const shown = new URL(HUB_PATH, window.location.href);
  for (const topic of topics) shown.searchParams.append("topic", topic);
  const query = [...shown.searchParams].map(([name, value]) => `${name}=${value}`).join("&");
  subUrl.textContent = `${feed.mode === "poll" ? "Polling for" : "EventSource on"} ${shown.pathname}?${query}`;
  feed.start();
  subStop.disabled = false;
}

function unsubscribe() {
  if (!feed) return;
  feed.close("unsubscribed");
  feed = null;
  chrome.onState("idle");
  subStop.disabled = true;
}

subForm.addEventListener("submit", (event) => {
  event.preventDefault();
  subscribe();
});
subStop.addEventListener("click", () => {
  unsubscribe();
  subStart.focus();
});
$("sub-demo").addEventListener("click", () => {
  subTopics.value = "urn:herald:demo:{feed}";
  subTypes.value = DEMO_TYPES.join(" ");
  subscribe();
});
$("events-clear").addEventListener("click", () => {
  events.replaceChildren();
  received = 0;
  eventCount.textContent = "0";
});

pubForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = new URLSearchParams();
  for (const topic of lines($("pub-topics").value)) body.append("topic", topic);
  body.set("data", $("pub-data").value);
  const type = $("pub-type").value.trim();
  const id = $("pub-id").value.trim();
  if (type) body.set("type", type);
  if (id) body.set("id", id);
  if ($("pub-private").checked) body.set("private", "on");
  // An update of a type the page is not listening for would be dropped by EventSource.
  if (type && feed) feed.listen(type);
  if (type && !words(subTypes.value).includes(type)) subTypes.value = `${subTypes.value} ${type}`.trim();
  pubResult.classList.remove("error");
  pubResult.textContent = "Publishing…";
  try {
    const response = await fetch(HUB_PATH, {
      method: "POST",
      headers: { Authorization: `Bearer ${$("pub-token").value.trim()}` },
      body,
    });
    const text = (await response.text()).trim();
    if (!response.ok) throw new Error(`${response.status}: ${text}`);
    pubResult.textContent = `Published: ${text}`;
  } catch (error) {
    pubResult.classList.add("error");
    pubResult.textContent = `Not published: ${error.message}`;
  }
  chrome.announce(pubResult.textContent);
});

// /?topic=…&type=…&lastEventID=… fills the form and subscribes at once (handy for links).
const params = new URLSearchParams(window.location.search);
if (params.has("topic")) {
  subTopics.value = params.getAll("topic").join("\n");
  if (params.has("type")) subTypes.value = params.getAll("type").join(" ");
  if (params.has("lastEventID")) subLast.value = params.get("lastEventID");
  subscribe();
}
