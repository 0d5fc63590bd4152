// The browser test's plumbing: named steps that fail with a one-line reason, the
// page's script errors, the JSON API (to compare the page with), and screenshots.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const log = (step, msg) => console.log(`[dashboard] ${step}: ${msg}`);

export class StepError extends Error {}
export function fail(step, msg) { throw new StepError(`${step}: ${msg}`); }

/** Runs one named step; any error becomes "<step>: <first line>". */
export async function step(name, fn) {
  const started = Date.now();
  try {
    const summary = await fn();
    log(name, `ok (${((Date.now() - started) / 1000).toFixed(1)} s)${summary ? ` — ${summary}` : ''}`);
  } catch (err) {
    if (err instanceof StepError) throw err;
    fail(name, err.message.split('\n')[0]);
  }
}

/** `f()` until it returns a truthy value (returned) or `ms` pass (then null). */
export async function until(ms, f, every = 250) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await f();
    if (value) return value;
    if (Date.now() > deadline) return null;
    await sleep(every);
  }
}

/** The JSON API, as the page's own requests see it. */
export function apiClient(base, apiKey) {
  return async function api(path, { method = 'GET', auth = true } = {}) {
    const headers = { Accept: 'application/json' };
    if (auth) headers.Authorization = `Bearer ${apiKey}`;
    for (let attempt = 0; ; attempt += 1) {
      const res = await fetch(`${base}${path}`, { method, headers });
      const text = await res.text();
      // A read shed while the page's own reads hold the permits: try again.
      if (res.status === 503 && method === 'GET' && attempt < 3) { await sleep(1000); continue; }
      if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
      return JSON.parse(text);
    }
  };
}

/**
 * Collects what must fail the test: uncaught exceptions, console errors, static files
 * that did not load and server errors. Expected failures are not errors: a 503 claim
 * (pool empty) and 4xx answers to actions (e.g. a 409 retry), which the page reports.
 */
export function watchErrors(page, base) {
  const errors = [];
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    // Chromium logs every non-2xx answer too; those are judged by status below.
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) errors.push(`console: ${msg.text()}`);
  });
  page.on('response', (res) => {
    const url = res.url();
    if (!url.startsWith(base)) return;
    const path = new URL(url).pathname;
    const status = res.status();
    const isApi = path.startsWith('/api/');
    if (!isApi && status >= 400) errors.push(`GET ${path} answered ${status}`);
    // 503 is expected of an empty pool's claim, and of a read shed while too many run
    // at once (the page tries it again).
    else if (isApi && status >= 500 && !(status === 503 && (path === '/api/pool/claim' || res.request().method() === 'GET'))) {
      errors.push(`${res.request().method()} ${path} answered ${status}`);
    }
  });
  page.on('requestfailed', (req) => {
    const why = req.failure() ? req.failure().errorText : 'failed';
    if (req.url().startsWith(base) && why !== 'net::ERR_ABORTED') errors.push(`${req.method()} ${req.url()}: ${why}`);
  });
  return errors;
}

/** Saves a screenshot under SCREENSHOT_DIR (when set) and prints its path. */
export async function screenshot(page, dir, name, options = {}) {
  if (!dir) return null;
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  await page.screenshot({ path, ...options });
  log('screenshot', path);
  return path;
}
