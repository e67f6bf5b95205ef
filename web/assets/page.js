// What every Herald page shares: the connection indicator, the Pause/Resume control (also
// Escape and Space), the polite live region, and safe element building (text only, never HTML).

import { LiveFeed } from "./live.js";

/**
 * Builds an element. Text goes through textContent, so event data can never become markup.
 * @param {string} tag
 * @param {{className?: string, text?: string, attrs?: Record<string, string>}} [props]
 * @param {...(Node|string)} children
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  if (props.className) node.className = props.className;
  if (props.text !== undefined) node.textContent = props.text;
  for (const [name, value] of Object.entries(props.attrs || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

/** The local time, HH:MM:SS. */
export function clock(date = new Date()) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** Parses JSON event data; null when it is not JSON. */
export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

const INTERACTIVE =
  "input, textarea, select, button, a[href], summary, [contenteditable], [role='button'], " +
  "[role='link'], [role='checkbox'], [tabindex='0']";

/**
 * The live bar: shows the state of the page's feed and pauses or resumes it.
 * Expects #conn (with #conn-text and #conn-countdown), #pause and #announcer in the page.
 */
export class Chrome {
  constructor() {
    this.conn = document.getElementById("conn");
    this.connText = document.getElementById("conn-text");
    this.countdown = document.getElementById("conn-countdown");
    this.pauseButton = document.getElementById("pause");
    this.announcer = document.getElementById("announcer");
    this.feed = null;
    this.updates = 0;
    this.ticker = 0;
    this.lastAnnounce = new Map();
    this.pauseButton.addEventListener("click", () => this.toggle());
    document.addEventListener("keydown", (event) => this.onKey(event));
    this.onState = this.onState.bind(this);
  }

  /** Makes `feed` the one this bar shows and controls. */
  bind(feed) {
    this.feed = feed;
    document.body.dataset.mode = feed.mode;
  }

  /** Counts one update shown by the page (for people: the count; for tests: data-updates). */
  counted() {
    this.updates += 1;
    document.body.dataset.updates = String(this.updates);
  }

  toggle() {
    const feed = this.feed;
    if (!feed) return;
    if (feed.state === "paused") feed.resume();
    else if (["open", "connecting", "reconnecting"].includes(feed.state)) feed.pause();
  }

  onKey(event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "Escape") {
      event.preventDefault();
      this.toggle();
    } else if (event.key === " " && !(event.target instanceof Element && event.target.closest(INTERACTIVE))) {
      event.preventDefault(); // no page scroll
      this.toggle();
    }
  }

  /**
   * Says `text` in the polite live region. With `key` and `every`, says it at most once per
   * `every` milliseconds for that key (fast feeds would otherwise talk without pause).
   */
  announce(text, key = "", every = 0) {
    const now = Date.now();
    if (key && every && now - (this.lastAnnounce.get(key) || 0) < every) return;
    if (key) this.lastAnnounce.set(key, now);
    this.announcer.textContent = text;
  }

  onState(state, detail = {}) {
    const mode = this.feed ? this.feed.mode : "sse";
    const live = mode === "poll" ? "Live (polling: this browser has no EventSource)" : "Live";
    const texts = {
      idle: "Not connected",
      connecting: "Connecting…",
      open: live,
      reconnecting: "Reconnecting",
      paused: "Paused",
      closed: detail.reason ? `Closed: ${detail.reason}` : "Closed",
      done: detail.reason ? `Finished: ${detail.reason}` : "Finished",
    };
    const text = texts[state] || state;
    this.conn.dataset.state = state;
    document.body.dataset.state = state;
    if (this.connText.textContent !== text) {
      this.connText.textContent = text;
      if (state !== "connecting") this.announce(`Connection: ${text}`);
    }
    clearInterval(this.ticker);
    this.countdown.textContent = "";
    if (state === "reconnecting" && detail.retryAt) {
      const tick = () => {
        const left = Math.ceil((detail.retryAt - Date.now()) / 1000);
        this.countdown.textContent = left > 0 ? `in ${left} s…` : "now…";
      };
      tick();
      this.ticker = setInterval(tick, 250);
    }
    const paused = state === "paused";
    this.pauseButton.textContent = paused ? "Resume" : "Pause";
    this.pauseButton.disabled = state === "done" || state === "closed" || state === "idle";
  }
}

/**
 * Starts a demo page: one feed on `topics`, delivering `types` to `onEvent`, shown and
 * controlled by the live bar. Returns {feed, chrome}.
 */
export function startDemo({ topics, types, onEvent }) {
  const chrome = new Chrome();
  const feed = new LiveFeed({
    topics,
    types,
    onState: chrome.onState,
    onEvent: (event) => {
      if (onEvent(event) !== false) chrome.counted();
    },
  });
  chrome.bind(feed);
  feed.start();
  return { feed, chrome };
}
