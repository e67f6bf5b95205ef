// One page, 20 EventSources: over TLS with HTTP/2 they share one connection and all receive;
// over HTTP/1.1 the browser opens at most 6 connections to the hub, so the 7th and later stall.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { publish, startHub, tempDir } from "../lib/hub.js";
import { launch, newPage } from "../lib/browser.js";

const STREAMS = 20;
const TOPICS = Array.from({ length: STREAMS }, (_, i) => `urn:e2e:many/${i}`);

let certs;
before(() => {
  // A throwaway self-signed certificate for 127.0.0.1.
  certs = tempDir("herald-e2e-tls-");
  const cert = join(certs.dir, "cert.pem");
  const key = join(certs.dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ], { stdio: "ignore", timeout: 15_000 });
  certs.tls = { cert, key };
  certs.ca = readFileSync(cert, "utf8");
});
after(() => certs?.remove());

/** Opens STREAMS EventSources in the page, one per topic, counting opens and messages. */
function openStreams(page) {
  return page.evaluate((topics) => {
    window.streams = topics.map((topic) => {
      const entry = { opened: false, received: 0 };
      entry.source = new EventSource(`/.well-known/mercure?topic=${encodeURIComponent(topic)}`);
      entry.source.onopen = () => (entry.opened = true);
      entry.source.onmessage = () => (entry.received += 1);
      return entry;
    });
  }, TOPICS);
}

const counts = (page) =>
  page.evaluate(() => ({
    opened: window.streams.filter((s) => s.opened).length,
    received: window.streams.filter((s) => s.received > 0).length,
    connecting: window.streams.filter((s) => s.source.readyState === EventSource.CONNECTING).length,
  }));

async function withHubAndBrowser(flags, run) {
  const hub = await startHub({ tls: certs.tls });
  const browser = await launch(["--ignore-certificate-errors", ...flags]);
  try {
    const page = await newPage(browser);
    await page.goto(`${hub.origin}/demos/`);
    await run(hub, page);
  } finally {
    await browser.close();
    await hub.stop();
  }
}

test("over TLS with HTTP/2, 20 EventSources in one page all open and receive", { timeout: 60_000 }, async () => {
  await withHubAndBrowser([], async (hub, page) => {
    const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
    assert.equal(protocol, "h2");
    await openStreams(page);
    await page.waitForFunction((n) => window.streams.filter((s) => s.opened).length === n, STREAMS);
    // One update to all 20 topics.
    await publish(hub, { topic: TOPICS, data: "to every stream", id: "all-1" }, { ca: certs.ca });
    await page.waitForFunction((n) => window.streams.filter((s) => s.received === 1).length === n, STREAMS);
    assert.deepEqual(await counts(page), { opened: STREAMS, received: STREAMS, connecting: 0 });
  });
});

test("over HTTP/1.1 the same page gets 6 streams and the 7th and later stall", { timeout: 60_000 }, async () => {
  await withHubAndBrowser(["--disable-http2"], async (hub, page) => {
    const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
    assert.equal(protocol, "http/1.1");
    await openStreams(page);
    await page.waitForFunction(() => window.streams.filter((s) => s.opened).length === 6);
    await publish(hub, { topic: TOPICS, data: "to every stream", id: "all-1" }, { ca: certs.ca });
    await page.waitForFunction(() => window.streams.filter((s) => s.received === 1).length === 6);
    // The other 14 wait for a free connection that never comes: give them a moment to prove it.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.deepEqual(await counts(page), { opened: 6, received: 6, connecting: STREAMS - 6 });
  });
});
