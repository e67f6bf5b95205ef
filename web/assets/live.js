// One live feed from the Herald hub: the browser's EventSource when it has one, else polling
// the hub's JSON history endpoint (/.well-known/mercure/history) about once a second.
//
// Both ways deliver the same events ({type, data, id}) in the hub's order, and both resume
// from the last id seen, so Pause/Resume loses nothing.

export const HUB_PATH = "/.well-known/mercure";
export const HISTORY_PATH = "/.well-known/mercure/history";

/** Chromium's and Firefox's reconnection delay when the server sent no `retry:`. */
const DEFAULT_RETRY_MS = 3000;
const POLL_LIMIT = 100;

/**
 * States reported to onState: "connecting", "open", "reconnecting" (detail.retryAt: when the
 * next attempt is due, in ms since the epoch), "paused", "closed" (detail.reason: why), and
 * "done" (closed on purpose by the page).
 */
export class LiveFeed {
  /**
   * @param {object} options
   * @param {string[]} options.topics topic selectors
   * @param {string[]} [options.types] event types to deliver ("message" is the unnamed type)
   * @param {(event: {type: string, data: string, id: string}) => void} options.onEvent
   * @param {(state: string, detail: object) => void} [options.onState]
   * @param {string} [options.token] subscriber JWT, sent as the `authorization` query parameter
   *   (EventSource cannot set headers)
   * @param {string} [options.lastEventId] resume after this id (sent as `lastEventID`)
   * @param {number} [options.pollInterval] milliseconds between polls without EventSource
   */
  constructor(options) {
    this.topics = options.topics;
    this.types = new Set(options.types && options.types.length ? options.types : ["message"]);
    this.onEvent = options.onEvent;
    this.onState = options.onState || (() => {});
    this.token = options.token || "";
    this.lastId = options.lastEventId || "";
    this.pollInterval = options.pollInterval || 1000;
    this.polling = typeof window.EventSource !== "function";
    this.source = null;
    this.timer = 0;
    this.cursor = this.lastId || null;
    this.state = "idle";
    this.generation = 0;
  }

  /** "sse" or "poll". */
  get mode() {
    return this.polling ? "poll" : "sse";
  }

  start() {
    this.generation += 1;
    if (this.polling) {
      this.setState("connecting");
      this.poll(this.generation);
    } else {
      this.connect();
    }
  }

  /** Stops receiving; resume() continues after the last event seen. */
  pause() {
    if (this.state === "paused" || this.state === "done" || this.state === "closed") return;
    this.stop();
    if (!this.lastId && !this.polling) this.rememberHead();
    this.setState("paused");
  }

  resume() {
    if (this.state !== "paused") return;
    this.start();
  }

  /** Closes for good (the page has what it wanted). */
  close(reason = "") {
    this.stop();
    this.setState("done", { reason });
  }

  /** Delivers events of `type` too, from now on. */
  listen(type) {
    if (this.types.has(type)) return;
    this.types.add(type);
    if (this.source) this.attach(this.source, type);
  }

  // ---- internals ----

  setState(state, detail = {}) {
    this.state = state;
    this.onState(state, detail);
  }

  stop() {
    this.generation += 1;
    if (this.source) {
      this.source.close();
      this.source = null;
    }
    clearTimeout(this.timer);
  }

  url(path) {
    const url = new URL(path, window.location.href);
    for (const topic of this.topics) url.searchParams.append("topic", topic);
    if (this.token) url.searchParams.set("authorization", this.token);
    return url;
  }

  deliver(type, data, id) {
    if (id) this.lastId = id;
    this.onEvent({ type, data, id });
  }

  connect() {
    const url = this.url(HUB_PATH);
    // The browser sends Last-Event-ID by itself when it reconnects; after a pause we start a
    // new EventSource, which has to be told with the query parameter.
    const resumeFrom = this.lastId || this.pausedAt || "";
    if (resumeFrom) url.searchParams.set("lastEventID", resumeFrom);
    this.pausedAt = "";
    const source = new EventSource(url);
    this.source = source;
    this.setState("connecting");
    source.addEventListener("open", () => {
      if (this.source !== source) return;
      this.backoff = 0;
      this.setState("open");
    });
    source.addEventListener("error", (event) => {
      // An event of type "error" sent by the server is data (a MessageEvent), not a failure.
      if (event instanceof MessageEvent || this.source !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        this.source = null;
        this.setState("reconnecting");
        this.explain(url);
      } else {
        this.setState("reconnecting", { retryAt: Date.now() + DEFAULT_RETRY_MS });
      }
    });
    for (const type of this.types) this.attach(source, type);
  }

  attach(source, type) {
    source.addEventListener(type, (event) => {
      if (!(event instanceof MessageEvent) || this.source !== source) return;
      this.deliver(type, event.data, event.lastEventId);
    });
  }

  /**
   * After a failed connection, which EventSource never retries: ask again with fetch to learn
   * the status and the reason. A hub that is busy or restarting (429, 5xx, unreachable) is
   * tried again later, backing off; anything else (400, 401…) stays closed, with its reason.
   */
  async explain(url) {
    const generation = this.generation;
    const controller = new AbortController();
    let retry = true;
    let reason = "the hub refused the subscription";
    try {
      const response = await fetch(url, { signal: controller.signal, cache: "no-store" });
      if (!response.ok) {
        reason = `${response.status}: ${(await response.text()).trim().slice(0, 300)}`;
        retry = response.status === 429 || response.status >= 500;
      }
    } catch {
      // Unreachable: worth another try.
    } finally {
      controller.abort();
    }
    if (generation !== this.generation) return;
    if (!retry) {
      this.setState("closed", { reason });
      return;
    }
    this.backoff = Math.min((this.backoff || DEFAULT_RETRY_MS / 2) * 2, 60_000);
    this.setState("reconnecting", { retryAt: Date.now() + this.backoff });
    this.timer = setTimeout(() => {
      if (generation === this.generation) this.connect();
    }, this.backoff);
  }

  /** With nothing received yet, remember where the log is now so resume() misses nothing. */
  async rememberHead() {
    try {
      const response = await fetch(this.url(HISTORY_PATH), { cache: "no-store" });
      if (!response.ok) return;
      const page = await response.json();
      if (!this.lastId && this.state === "paused") this.pausedAt = page.next;
    } catch {
      // Resume will start from "now".
    }
  }

  async poll(generation) {
    const url = this.url(HISTORY_PATH);
    if (this.cursor) url.searchParams.set("after", this.cursor);
    url.searchParams.set("limit", String(POLL_LIMIT));
    let delay = this.pollInterval;
    try {
      const response = await fetch(url, { cache: "no-store" });
      if (generation !== this.generation) return;
      if (response.status >= 400 && response.status < 500) {
        const text = (await response.text()).trim();
        this.setState("closed", { reason: `${response.status}: ${text.slice(0, 300)}` });
        return;
      }
      if (!response.ok) throw new Error(`status ${response.status}`);
      const page = await response.json();
      if (generation !== this.generation) return;
      if (this.state !== "open") this.setState("open");
      for (const update of page.updates) {
        this.cursor = update.id;
        if (this.types.has(update.type)) this.deliver(update.type, update.data, update.id);
        if (generation !== this.generation) return; // the page paused or closed the feed
      }
      this.cursor = page.next;
      if (page.updates.length >= POLL_LIMIT) delay = 0;
    } catch {
      if (generation !== this.generation) return;
      delay = DEFAULT_RETRY_MS;
      this.setState("reconnecting", { retryAt: Date.now() + delay });
    }
    this.timer = setTimeout(() => this.poll(generation), delay);
  }
}
