// Chat: messages are POSTed with fetch to /demos/chat/messages, which publishes them to the hub;
// every open page (this one included) receives them as `chat` events over SSE.
import { clock, el, parseJson, startDemo } from "./page.js";

const CHAT_PATH = "/demos/chat/messages";
const MAX_SHOWN = 200;

const log = document.getElementById("messages");
const form = document.getElementById("chat-form");
const name = document.getElementById("name");
const text = document.getElementById("text");
const result = document.getElementById("send-result");

name.value = sessionStorage.getItem("herald-chat-name") || `Guest ${Math.floor(1000 + Math.random() * 9000)}`;

function show(message) {
  const mine = message.name === name.value.trim();
  const item = el(
    "li",
    { className: mine ? "mine" : "" },
    el("span", { className: "who", text: String(message.name) }),
    el("span", { className: "what", text: String(message.text) }),
    el("span", { className: "when", text: clock() }),
  );
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(item);
  while (log.children.length > MAX_SHOWN) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

const { chrome } = startDemo({
  topics: ["urn:herald:demo:chat"],
  types: ["chat"],
  onEvent(event) {
    const message = parseJson(event.data);
    if (!message || typeof message.name !== "string" || typeof message.text !== "string") return false;
    show(message);
    chrome.announce(`${message.name} says: ${message.text}`);
    return true;
  },
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = new URLSearchParams({ name: name.value.trim(), text: text.value.trim() });
  if (!body.get("name") || !body.get("text")) return;
  sessionStorage.setItem("herald-chat-name", body.get("name"));
  result.classList.remove("error");
  result.textContent = "Sending…";
  try {
    const response = await fetch(CHAT_PATH, { method: "POST", body });
    if (response.ok) {
      result.textContent = "";
      text.value = "";
      text.focus();
    } else if (response.status === 404) {
      throw new Error("this hub has no chat endpoint: start it with herald serve --demo");
    } else {
      throw new Error((await response.text()).trim() || `status ${response.status}`);
    }
  } catch (error) {
    result.classList.add("error");
    result.textContent = `Not sent: ${error.message}`;
    chrome.announce(result.textContent);
  }
});
