// The GitHub-shaped origin on loopback (`tierstack-origin`, from env
// TIERSTACK_ORIGIN_BIN, which tests/run-node builds) for the test files
// that read through GitHub: `useOrigin()` starts it before the file's
// tests, resets it before each, and stops it after them; `urls` holds its
// addresses, and the functions below drive its control API.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, before, beforeEach } from 'node:test';

/** Where the shadcn v4 registry lives in the repository. */
export const BASE = 'apps/v4/registry/new-york-v4';

/** The components and blocks the origin is seeded with. */
export const COMPONENTS = [
  'accordion', 'alert', 'alert-dialog', 'aspect-ratio', 'avatar', 'badge', 'breadcrumb', 'button', 'calendar',
  'card', 'carousel', 'chart', 'checkbox', 'collapsible', 'command', 'context-menu', 'dialog', 'drawer',
  'dropdown-menu', 'form', 'hover-card', 'input', 'input-otp', 'label', 'menubar', 'navigation-menu',
  'pagination', 'popover', 'progress', 'radio-group', 'resizable', 'scroll-area', 'select', 'separator', 'sheet',
  'sidebar', 'skeleton', 'slider', 'sonner', 'switch', 'table', 'tabs', 'textarea', 'toggle', 'toggle-group',
  'tooltip',
];
export const BLOCKS = ['dashboard-01', 'login-01', 'login-02', 'sidebar-01', 'signup-01'];

/** The origin's addresses, `{api, raw, other}`, once it has started. */
export const urls = {};

/** Starts the origin for this test file (see the top of this file). */
export function useOrigin() {
  let child;
  before(async () => {
    const bin = process.env.TIERSTACK_ORIGIN_BIN;
    assert.ok(bin, 'TIERSTACK_ORIGIN_BIN names the tierstack-origin binary (tests/run-node builds it)');
    // stdin stays an open pipe: the origin ends at its end of file.
    child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout });
    const [line] = await Promise.race([
      once(lines, 'line'),
      once(child, 'exit').then(([code]) => {
        throw new Error(`tierstack-origin exited (${code}) before printing its URLs`);
      }),
    ]);
    Object.assign(urls, JSON.parse(line));
  });
  after(async () => {
    const exited = once(child, 'exit');
    child.stdin.end();
    await exited;
  });
  beforeEach(() => control('reset'));
}

/** POSTs to the origin's control API; resolves to the answer's text. */
export async function control(what, body) {
  const response = await fetch(`${urls.api}/_origin/${what}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal(response.status, 200, `POST /_origin/${what}: ${await response.clone().text()}`);
  return response.text();
}

/** The requests the origin logged since the last reset. */
export async function requests() {
  const log = await (await fetch(`${urls.api}/_origin/requests`)).json();
  assert.equal(log.count, log.requests.length);
  return log.requests;
}

/** How many requests the origin logged since the last reset. */
export const count = async () => (await requests()).length;

/** Adds a fault (see tests/origin's `Fault`). */
export const fault = (spec) => control('fault', spec);

/** Now, in seconds since the Unix epoch (rate-limit resets are in seconds). */
export const nowS = () => Math.floor(Date.now() / 1000);
