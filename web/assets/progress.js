// Progress monitor: follows one job's `progress` events until its `complete` or `error` event,
// then closes the connection. "Watch the next job" opens a new one.
import { LiveFeed } from "./live.js";
import { Chrome, clock, el, parseJson } from "./page.js";

const title = document.getElementById("job-title");
const bar = document.getElementById("bar");
const status = document.getElementById("status");
const outcome = document.getElementById("outcome");
const again = document.getElementById("again");
const steps = document.getElementById("steps");

const chrome = new Chrome();
let feed = null;
let job = null; // the id of the job this page follows

function reset() {
  job = null;
  title.textContent = "Waiting for a job to start…";
  bar.value = 0;
  bar.textContent = "0 %";
  status.textContent = "No progress yet.";
  outcome.hidden = true;
  outcome.textContent = "";
  again.hidden = true;
  steps.replaceChildren();
}

function onEvent(event) {
  const data = parseJson(event.data);
  if (!data || typeof data.job !== "string") return;
  if (job === null) {
    // Follow the first job seen running; a job's last event alone is not worth following.
    if (event.type !== "progress") return;
    job = data.job;
    title.textContent = String(data.name || data.job);
  }
  if (data.job !== job) return;
  chrome.counted();
  if (event.type === "progress") {
    const percent = Math.max(0, Math.min(100, Number(data.percent) || 0));
    bar.value = percent;
    bar.textContent = `${percent} %`;
    status.textContent = `${percent} % · ${data.step || ""}`;
    steps.append(el("li", { text: `${clock()} ${percent} % ${data.step || ""}` }));
    chrome.announce(`${percent} percent: ${data.step || ""}`, "progress", 5000);
    return;
  }
  const failed = event.type === "error";
  if (!failed) {
    bar.value = 100;
    bar.textContent = "100 %";
  }
  status.textContent = failed ? "Failed." : "100 % · Done.";
  outcome.dataset.kind = failed ? "error" : "complete";
  outcome.textContent = failed ? `Error: ${data.message || "the job failed"}` : `Complete: ${data.result || "done"}`;
  outcome.hidden = false;
  steps.append(el("li", { text: `${clock()} ${failed ? "error" : "complete"}` }));
  chrome.announce(outcome.textContent);
  // The job is over: nothing more to receive, so stop holding a connection to the hub.
  feed.close(failed ? "the job failed" : "the job is complete");
  again.hidden = false;
}

function watch() {
  reset();
  feed = new LiveFeed({
    topics: ["urn:herald:demo:jobs"],
    types: ["progress", "complete", "error"],
    onEvent,
    onState: chrome.onState,
  });
  chrome.bind(feed);
  feed.start();
}

again.addEventListener("click", () => {
  watch();
  title.focus();
});
title.tabIndex = -1;
watch();
