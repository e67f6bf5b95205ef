// Every demo page, fed by `herald serve --demo`: loads without console errors, updates live,
// pauses (Escape) and resumes (Space) without losing what came meanwhile, passes axe-core with
// no serious or critical violation, and leaves a screenshot in test-output/. The same pages
// with window.EventSource deleted before load still update, by polling the history endpoint.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { publish, publisherToken, startHub } from "../lib/hub.js";
import { launch, newPage, screenshot, seriousViolations } from "../lib/browser.js";

/** What each demo listens to, and an update the test publishes while the page is paused. */
const DEMOS = [
  {
    name: "notifications",
    topic: "urn:herald:demo:notifications",
    inject: { type: "notification", data: { title: "E2E note while paused", body: "Published by the test.", level: "warning" } },
    shows: "E2E note while paused",
  },
  {
    name: "ticker",
    topic: "urn:herald:demo:ticker",
    inject: { type: "quotes", data: { quotes: [{ symbol: "E2EX", price: 42, change: 1.5 }] } },
    shows: "E2EX",
  },
  { name: "progress", topic: "urn:herald:demo:jobs" },
  {
    name: "chat",
    topic: "urn:herald:demo:chat",
    inject: { type: "chat", data: { name: "E2E", text: "sent while paused" } },
    shows: "sent while paused",
  },
  {
    name: "metrics",
    topic: "urn:herald:demo:metrics",
    inject: { type: "metrics", data: { cpu: 12, memory: 40, temperature: 20, humidity: 50, subscribers: 1, position: 1 } },
  },
];

/** How long a paused page is watched to see that nothing arrives. */
const PAUSE_WATCH_MS = 1500;

let browser;
let token;
before(async () => {
  browser = await launch();
  token = await publisherToken();
});
after(async () => {
  await browser?.close();
});

const updates = (page) => page.evaluate(() => Number(document.body.dataset.updates || 0));
const waitUpdates = (page, n, timeout = 10_000) =>
  page.waitForFunction((n) => Number(document.body.dataset.updates || 0) >= n, n, { timeout });

/** The chat page has no feed of its own to wait for: say something, with the keyboard only. */
async function chatSomething(page, text) {
  await page.focus("#text");
  await page.keyboard.type(text);
  await page.keyboard.press("Enter");
  await page.locator("#messages li", { hasText: text }).waitFor();
}

for (const demo of DEMOS) {
  test(`demo ${demo.name}: live, Pause/Resume from the keyboard, accessible, no console errors`, { timeout: 60_000 }, async () => {
    const hub = await startHub({ demo: true });
    const page = await newPage(browser);
    // Keep every EventSource the page makes, to check later that it closed them.
    await page.addInitScript(() => {
      const Native = window.EventSource;
      window.__sources = [];
      window.EventSource = class extends Native {
        constructor(...args) {
          super(...args);
          window.__sources.push(this);
        }
      };
    });
    try {
      await page.goto(`${hub.origin}/demos/${demo.name}`);
      await page.waitForSelector("body[data-state='open'][data-mode='sse']");
      await page.waitForSelector("#conn-text:text-is('Live')");
      // Keyboard only: Tab from the top reaches the Pause button, and focus is visible.
      for (let i = 0; i < 20 && (await page.evaluate(() => document.activeElement?.id)) !== "pause"; i++) {
        await page.keyboard.press("Tab");
      }
      assert.equal(await page.evaluate(() => document.activeElement.id), "pause");
      assert.equal(await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle), "solid");
      if (demo.name === "chat") await chatSomething(page, "hello from the keyboard");
      await waitUpdates(page, 1);

      // Pause with Escape: the connection closes and nothing more is shown.
      await page.keyboard.press("Escape");
      await page.waitForSelector("body[data-state='paused']");
      assert.equal(await page.textContent("#pause"), "Resume");
      const before = await updates(page);
      if (demo.inject) {
        await publish(hub, { topic: demo.topic, type: demo.inject.type, data: JSON.stringify(demo.inject.data) }, { token });
      }
      await new Promise((resolve) => setTimeout(resolve, PAUSE_WATCH_MS));
      assert.equal(await updates(page), before, "the page changed while paused");
      if (demo.shows) assert.equal(await page.getByText(demo.shows).count(), 0);

      // Resume with Space (focus on no control): what came meanwhile arrives, then live again.
      await page.evaluate(() => document.activeElement?.blur());
      await page.keyboard.press("Space");
      await waitUpdates(page, before + 1);
      if (demo.shows) await page.getByText(demo.shows).first().waitFor();
      if (demo.name !== "progress") await page.waitForSelector("body[data-state='open']");

      if (demo.name === "progress") {
        // The job ends with `complete` or `error`; the page then closes its EventSource.
        await page.waitForSelector("body[data-state='done']", { timeout: 20_000 });
        assert.ok(await page.isVisible("#outcome"));
        assert.match(await page.textContent("#outcome"), /^(Complete|Error): /);
        const states = await page.evaluate(() => window.__sources.map((s) => s.readyState));
        assert.ok(states.length >= 1);
        assert.ok(states.every((s) => s === 2 /* CLOSED */), `open EventSources left: ${states}`);
      }

      assert.deepEqual(await seriousViolations(page), []);
      await screenshot(page, `demo-${demo.name}`);
      assert.deepEqual(page.problems, []);
    } finally {
      await page.context().close();
      await hub.stop();
    }
  });
}

for (const demo of DEMOS) {
  test(`demo ${demo.name} without EventSource: updates by polling`, { timeout: 60_000 }, async () => {
    const hub = await startHub({ demo: true });
    const page = await newPage(browser);
    await page.addInitScript(() => {
      delete window.EventSource;
    });
    const streams = [];
    page.on("request", (request) => {
      if (request.url().includes("/.well-known/mercure?")) streams.push(request.url());
    });
    try {
      await page.goto(`${hub.origin}/demos/${demo.name}`);
      await page.waitForSelector("body[data-state='open'][data-mode='poll']");
      assert.match(await page.textContent("#conn-text"), /polling/);
      if (demo.name === "chat") await chatSomething(page, "hello by polling");
      await waitUpdates(page, 1);
      if (demo.name === "ticker") {
        // Pause stops polling too; resume catches up from the cursor.
        await page.keyboard.press("Escape");
        await page.waitForSelector("body[data-state='paused']");
        const before = await updates(page);
        await new Promise((resolve) => setTimeout(resolve, PAUSE_WATCH_MS));
        assert.equal(await updates(page), before);
        await page.keyboard.press("Escape");
        await waitUpdates(page, before + 2);
      }
      assert.deepEqual(streams, [], "the page opened an event stream without EventSource");
      assert.deepEqual(page.problems, []);
    } finally {
      await page.context().close();
      await hub.stop();
    }
  });
}

test("the demo index lists every demo and passes axe", { timeout: 30_000 }, async () => {
  const hub = await startHub({ demo: true });
  const page = await newPage(browser);
  try {
    await page.goto(`${hub.origin}/demos/`);
    const links = await page.$$eval(".demo-list a", (as) => as.map((a) => a.getAttribute("href")));
    assert.deepEqual(links, DEMOS.map((d) => `/demos/${d.name}`));
    assert.deepEqual(await seriousViolations(page), []);
    await screenshot(page, "demos-index");
    assert.deepEqual(page.problems, []);
  } finally {
    await page.context().close();
    await hub.stop();
  }
});
