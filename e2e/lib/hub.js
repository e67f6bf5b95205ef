// Starting and stopping a real `herald serve` for one test, and talking to it from Node.

import { spawn, execFile } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
export const ROOT = resolve(here, "..", "..");
export const OUTPUT = join(ROOT, "test-output");

/** The binary under test: $HERALD_BIN, else the workspace's debug build. */
export const HERALD = process.env.HERALD_BIN || join(ROOT, "target", "debug", "herald");

/** The HS256 secret every test hub uses. */
export const JWT_KEY = "e2e-secret-key-for-tests-only";

/** How long a hub gets to start or stop. */
const START_TIMEOUT_MS = 15_000;

if (!existsSync(HERALD)) {
  throw new Error(`no herald binary at ${HERALD}: run cargo build -p herald (or set HERALD_BIN)`);
}

/** A port that was free a moment ago. */
export async function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = "herald-e2e-") {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs the herald CLI and returns its stdout. */
export async function herald(...args) {
  const { stdout } = await promisify(execFile)(HERALD, args, { timeout: 15_000 });
  return stdout.trim();
}

/** A publisher token for every topic, minted by `herald token`. */
export async function publisherToken() {
  return herald("token", "--key", JWT_KEY, "--publish", "*");
}

/**
 * Starts `herald serve` and resolves once it listens.
 * @param {object} [options]
 * @param {number} [options.port] default: a free port
 * @param {string} [options.dataDir] with store "redb"
 * @param {"memory"|"redb"} [options.store]
 * @param {boolean} [options.demo]
 * @param {{cert: string, key: string}} [options.tls] PEM file paths
 * @param {string[]} [options.args] more arguments
 */
export async function startHub(options = {}) {
  const port = options.port || (await freePort());
  const store = options.store || "memory";
  const scratch = options.dataDir ? null : tempDir();
  const dataDir = options.dataDir || scratch.dir;
  const args = [
    "serve",
    "--listen", `127.0.0.1:${port}`,
    "--store", store,
    "--data-dir", dataDir,
    "--jwt-key", JWT_KEY,
  ];
  if (options.demo) args.push("--demo");
  if (options.tls) args.push("--tls-cert", options.tls.cert, "--tls-key", options.tls.key);
  args.push(...(options.args || []));
  const child = spawn(HERALD, args, { stdio: ["ignore", "ignore", "pipe"], env: cleanEnv() });
  let log = "";
  const exited = new Promise((resolveExit) => child.once("exit", (code, signal) => resolveExit({ code, signal })));
  await new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => reject(new Error(`herald did not start in time:\n${log}`)), START_TIMEOUT_MS);
    child.stderr.on("data", (chunk) => {
      log += chunk;
      if (log.includes("hub listening on")) {
        clearTimeout(timer);
        resolveStart();
      }
    });
    exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`herald exited with ${code} before listening:\n${log}`));
    });
  });
  const scheme = options.tls ? "https" : "http";
  const origin = `${scheme}://127.0.0.1:${port}`;
  return {
    port,
    origin,
    hubUrl: `${origin}/.well-known/mercure`,
    dataDir,
    log: () => log,
    /** SIGTERM, and resolve once the process is gone (SIGKILL after the timeout). */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), START_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      if (scratch) scratch.remove();
    },
  };
}

/** The environment without HERALD_* variables, so that only the test's flags count. */
function cleanEnv() {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith("HERALD_")) delete env[name];
  return env;
}

/**
 * POSTs an update to the hub over HTTP/1.1 and resolves with the id it answered.
 * @param {{hubUrl: string}} hub
 * @param {Record<string, string|string[]>} fields Mercure form fields
 * @param {{token?: string, ca?: string}} [options]
 */
export async function publish(hub, fields, options = {}) {
  const body = new URLSearchParams();
  for (const [name, value] of Object.entries(fields)) {
    for (const v of [].concat(value)) body.append(name, v);
  }
  const token = options.token || (await publisherToken());
  const response = await send(hub.hubUrl, "POST", body.toString(), {
    "content-type": "application/x-www-form-urlencoded",
    authorization: `Bearer ${token}`,
  }, options.ca);
  if (response.status !== 200) throw new Error(`publish answered ${response.status}: ${response.body}`);
  return response.body;
}

/** One HTTP(S) request; resolves with {status, headers, body}. */
export function send(url, method, body, headers = {}, ca = undefined) {
  const target = new URL(url);
  const request = target.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolveResponse, reject) => {
    const req = request(target, { method, headers, ca, timeout: 10_000 }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (text += chunk));
      res.on("end", () => resolveResponse({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.on("timeout", () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on("error", reject);
    req.end(body);
  });
}
