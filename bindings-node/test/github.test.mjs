// GitHub as the source of truth, against a GitHub-shaped origin on loopback
// (`tierstack-origin`, from env TIERSTACK_ORIGIN_BIN: a real HTTP server
// that counts its requests and injects faults). Every scenario asserts the
// origin's request count exactly. The Rust reference: core/tests/github.rs,
// github_failures.rs, github_rate_limits.rs and github_config.rs.
//
// A file is stored as a JSON string of its text, so `get` gives the
// component's source as a string (its bytes, through `getBuffer`, are that
// JSON); a listing is a JSON array of names.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { HybridStorage, advanceTestClock } from 'tierstack';

import { rejectsWith, sleep, tempDir, throwsWith } from './helpers.mjs';
import { BASE, BLOCKS, COMPONENTS, control, count, fault, nowS, requests, urls, useOrigin } from './origin.mjs';

const BUTTON = 'component:react:button';
const CARD = 'component:react:card';

useOrigin();

// ---- storages ---------------------------------------------------------------------

function merge(into, from) {
  for (const [key, value] of Object.entries(from)) {
    if (value && typeof value === 'object' && !Array.isArray(value) && into[key] && typeof into[key] === 'object') {
      merge(into[key], value);
    } else {
      into[key] = value;
    }
  }
  return into;
}

/** The config of a storage on `path` reading through the origin, with `extra` merged in. */
function config(path, extra = {}) {
  return merge(
    { sqlite: { path }, ttlJitter: 0, github: { apiUrl: urls.api, rawUrl: urls.raw, timeout: 5 } },
    extra,
  );
}

/** A storage on a fresh file, disposed when the test ends. */
function open(t, extra = {}) {
  const path = join(tempDir(t), 'c.db');
  const storage = new HybridStorage(config(path, extra));
  t.after(() => storage.dispose());
  return { storage, path };
}

const firstLine = (text) => text.split('\n')[0];

/** Resolves once `condition()` resolves truthy, checked every 10 ms; fails after 5 s. */
async function waitFor(condition) {
  const deadline = performance.now() + 5000;
  while (!(await condition())) {
    assert.ok(performance.now() < deadline, 'timed out');
    await sleep(0.01);
  }
}

// ---- reading through ----------------------------------------------------------------

test('a component is fetched once, then served from memory, then from the file', async (t) => {
  const { storage, path } = open(t);
  const first = await storage.lookup(BUTTON);
  assert.equal(first.tier, 'source');
  assert.equal(first.stale, false);
  assert.equal(firstLine(first.value), `// ${BASE}/ui/button.tsx`);
  const [request] = await requests();
  assert.equal(await count(), 1);
  assert.deepEqual(
    { host: request.host, method: request.method, path: request.path, status: request.status },
    { host: 'raw', method: 'GET', path: `/shadcn-ui/ui/main/${BASE}/ui/button.tsx`, status: 200 },
  );

  for (let i = 0; i < 3; i++) {
    const again = await storage.lookup(BUTTON);
    assert.equal(again.tier, 'memory');
    assert.deepEqual(again.value, first.value);
  }
  assert.deepEqual(await storage.get(BUTTON), first.value);
  // The bytes stored are the text as a JSON string.
  assert.equal(JSON.parse((await storage.getBuffer(BUTTON)).toString('utf8')), first.value);
  assert.equal(await count(), 1);
  await storage.dispose();

  // Another storage on the file (a restart) reads it: no request.
  const restarted = new HybridStorage(config(path));
  t.after(() => restarted.dispose());
  const fromFile = await restarted.lookup(BUTTON);
  assert.equal(fromFile.tier, 'sqlite');
  assert.deepEqual(fromFile.value, first.value);
  assert.equal(await count(), 1);
});

test('new HybridStorage({github: {token}}) reads through GitHub with the defaults for the rest', async (t) => {
  // Only the token and the URLs (to reach the origin) are given: routes
  // default to the shadcn-v4 preset.
  const path = join(tempDir(t), 'c.db');
  const storage = new HybridStorage({
    sqlite: { path },
    github: { token: 'ghp_defaults_0123456789', apiUrl: urls.api, rawUrl: urls.raw },
  });
  t.after(() => storage.dispose());
  assert.equal(firstLine(await storage.get(CARD)), `// ${BASE}/ui/card.tsx`);
  assert.deepEqual(await storage.get('blocks:react'), BLOCKS);
  assert.equal(await count(), 2);
});

test('demos, blocks and listings follow the preset routes; unrouted keys are plain misses', async (t) => {
  const { storage } = open(t);
  assert.equal(firstLine(await storage.get('component-demo:react:dialog')), `// ${BASE}/examples/dialog-demo.tsx`);
  assert.equal(firstLine(await storage.get('block:react:login-01')), `// ${BASE}/blocks/login-01.tsx`);

  const names = await storage.get('components:react');
  assert.equal(names.length, 46);
  assert.deepEqual(names, [...COMPONENTS].sort());
  assert.deepEqual(await storage.get('blocks:react'), [...BLOCKS].sort());
  const log = await requests();
  assert.equal(log.length, 4);
  const listing = log.filter((r) => r.host === 'api');
  assert.equal(listing.length, 2);
  assert.equal(listing[0].path, `/repos/shadcn-ui/ui/contents/${BASE}/ui`);
  assert.equal(listing[0].query, 'ref=main');

  // A key no route serves is a plain miss: no request.
  for (const key of ['session:42', 'component:vue:button']) {
    assert.equal(await storage.get(key), undefined);
    assert.equal(await storage.get(key), undefined);
    assert.equal(await storage.lookup(key), undefined);
  }
  assert.deepEqual(await storage.mget(['session:42', 'components:react']), new Map([['components:react', names]]));
  assert.equal(await count(), 4);
});

test('mget reads the components it misses through GitHub, one request each', async (t) => {
  const { storage } = open(t);
  const found = await storage.mget([BUTTON, 'component:react:no-such-thing', CARD, 'session:1']);
  assert.deepEqual([...found.keys()], [BUTTON, CARD]);
  assert.equal(firstLine(found.get(CARD)), `// ${BASE}/ui/card.tsx`);
  assert.equal(await count(), 3);
});

test('github.enabled false loads nothing through GitHub', async (t) => {
  const { storage } = open(t, { github: { enabled: false } });
  assert.equal(await storage.get(BUTTON), undefined);
  assert.equal(await storage.get('components:react'), undefined);
  assert.equal(await count(), 0);
  assert.equal(storage.getStats().source.requests, 0);
});

test('unchanged content is revalidated with a 304 and no body; changed content comes back whole', async (t) => {
  const { storage } = open(t, { testClock: true, sqlite: { ttl: 1 }, memory: { ttl: 1 } });
  const first = await storage.get(BUTTON);
  assert.equal((await requests())[0].status, 200);
  advanceTestClock(1);

  const renewed = await storage.lookup(BUTTON);
  assert.deepEqual(renewed.value, first);
  assert.equal(renewed.stale, false);
  let log = await requests();
  assert.equal(log.length, 2);
  assert.equal(log[1].status, 304);
  assert.equal(typeof log[1].if_none_match, 'string');
  assert.notEqual(log[1].if_none_match, '');
  // Renewed: fresh again, from memory, with no request.
  assert.equal((await storage.lookup(BUTTON)).tier, 'memory');
  assert.equal(await count(), 2);

  await control('file', {
    owner: 'shadcn-ui', repo: 'ui', ref: 'main', path: `${BASE}/ui/button.tsx`, content: '// changed',
  });
  advanceTestClock(1);
  assert.equal(await storage.get(BUTTON), '// changed');
  log = await requests();
  assert.equal(log.length, 3);
  assert.equal(log[2].status, 200);
});

test('a missing component is not found and remembered', async (t) => {
  const { storage } = open(t);
  assert.equal(await storage.get('component:react:no-such-thing'), undefined);
  assert.equal(await storage.get('component:react:no-such-thing'), undefined);
  assert.equal(await count(), 1);
  assert.equal((await requests())[0].status, 404);
  const { notFound, negativeHits } = storage.getStats().source;
  assert.deepEqual({ notFound, negativeHits }, { notFound: 1, negativeHits: 1 });
});

test('a hundred concurrent reads of a missing component make one request', async (t) => {
  await fault({ delay_ms: 200, times: 1 });
  const { storage } = open(t);
  const values = await Promise.all(Array.from({ length: 100 }, () => storage.get(CARD)));
  assert.equal(values.length, 100);
  for (const value of values) assert.equal(firstLine(value), `// ${BASE}/ui/card.tsx`);
  assert.equal(await count(), 1);
});

// ---- failures ------------------------------------------------------------------------

test('server errors serve the stale copy, then open the breaker', async (t) => {
  const { storage } = open(t, {
    testClock: true, sqlite: { ttl: 1 }, memory: { ttl: 1 }, circuitBreaker: { threshold: 3, timeout: 60 },
  });
  const original = await storage.get(BUTTON);
  advanceTestClock(1);
  for (const status of [500, 502, 503]) {
    await fault({ status, times: 1 });
    const served = await storage.lookup(BUTTON);
    assert.equal(served.stale, true, `${status}`);
    assert.deepEqual(served.value, original);
  }
  assert.equal(await count(), 4);
  const status = storage.getCircuitBreakerStatus();
  assert.equal(status.state, 'OPEN');
  assert.equal(status.isOpen, true);

  // Open: no request; the stale copy still; without one, the error.
  assert.equal((await storage.lookup(BUTTON)).stale, true);
  await rejectsWith(storage.get(CARD), 'source_unavailable');
  assert.equal(await count(), 4);
  assert.equal(storage.getStats().source.rejected, 2);
});

test('without a stale copy a server error is a source error, and nothing is stored', async (t) => {
  await fault({ status: 503, times: 1 });
  const { storage } = open(t);
  await rejectsWith(storage.get(BUTTON), 'source', /503/);
  // The next read asks again.
  assert.equal(firstLine(await storage.get(BUTTON)), `// ${BASE}/ui/button.tsx`);
  assert.equal(await count(), 2);
});

test('a slow origin serves stale at the soft timeout, and fails at the hard one', async (t) => {
  const { storage } = open(t, {
    testClock: true, sqlite: { ttl: 1 }, memory: { ttl: 1 }, failSafe: { softTimeout: 0.2, hardTimeout: 0.6 },
  });
  const original = await storage.get(BUTTON);
  advanceTestClock(1);
  await fault({ delay_ms: 400, times: 1 });
  const started = performance.now();
  const served = await storage.lookup(BUTTON);
  const took = performance.now() - started;
  assert.equal(served.stale, true);
  assert.deepEqual(served.value, original);
  assert.ok(took >= 200 && took < 250, `served stale after ${took.toFixed(1)} ms`);
  // The fetch goes on and fills the tiers (waited for: its answer comes
  // 400 ms after the request).
  await waitFor(() => storage.has(BUTTON));
  const filled = await storage.lookup(BUTTON);
  assert.equal(filled.stale, false);
  assert.equal(await count(), 2);

  // Past the hard timeout, with no stale copy: a timeout.
  await fault({ delay_ms: 1500, times: 1 });
  await rejectsWith(storage.get(CARD), 'timeout');
  assert.equal(storage.getStats().source.timeouts, 1);
  assert.equal(await count(), 3);
  // Let the origin finish the abandoned answer before the next test resets it.
  await waitFor(async () => (await requests()).every((r) => r.status !== 0));
});

test('a refused connection is a source failure', async (t) => {
  const closed = createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const { port } = closed.address();
  closed.close();
  await once(closed, 'close');

  const { storage } = open(t, { github: { rawUrl: `http://127.0.0.1:${port}` } });
  await rejectsWith(storage.get(BUTTON), 'source', /could not connect/);
  assert.equal(storage.getStats().source.failures, 1);
  assert.equal(await count(), 0);
});

test('truncated and oversized bodies are source failures and nothing is stored', async (t) => {
  const { storage } = open(t, { github: { maxBodyBytes: 100_000 } });
  await fault({ truncate: true, times: 1 });
  await rejectsWith(storage.get(BUTTON), 'source', /broke off/);

  await fault({ oversize: 200_000, times: 1 });
  await rejectsWith(storage.get(BUTTON), 'source', /max_body_bytes/);
  assert.equal(storage.getStats().source.failures, 2);
  assert.equal(await storage.has(BUTTON), false);
  assert.equal(await storage.getMetadata(BUTTON), null);
  assert.equal(await count(), 2);
});

test('traversal keys are invalid_key and make no request, through get and mget', async (t) => {
  const { storage } = open(t);
  for (const key of [
    'component:react:../../../etc/passwd',
    'component:react:..',
    'component:react:a/b',
    'component:react:a\\b',
    'component:react:%2e%2e',
    'component:react:%2fetc',
    'component-demo:react:%41',
    'block:react:.git',
  ]) {
    await rejectsWith(storage.get(key), 'invalid_key');
    await rejectsWith(storage.get(key), 'invalid_key');
    await rejectsWith(storage.mget([key]), 'invalid_key');
    await rejectsWith(storage.mget([BUTTON, key]), 'invalid_key');
  }
  assert.equal(await count(), 0);
  assert.equal(storage.getStats().source.requests, 0);
});

// ---- rate limits -----------------------------------------------------------------------

const rateLimited = (reset, extra = {}) => ({
  status: 403,
  headers: [['X-RateLimit-Remaining', '0'], ['X-RateLimit-Reset', String(reset)]],
  times: 1,
  ...extra,
});

/** The time of `storage`'s clock, in ms (on the test clock, which stands still until moved). */
async function clockOf(storage) {
  await storage.set('clock', 0);
  return (await storage.getMetadata('clock')).createdAt.getTime();
}

test('a 403 rate limit opens the breaker until the reset, then a probe closes it', async (t) => {
  const { storage } = open(t, { testClock: true });
  const now = await clockOf(storage);
  const reset = Math.floor(now / 1000) + 2;
  await fault(rateLimited(reset, { body: '{"message":"API rate limit exceeded"}' }));
  await rejectsWith(storage.get(BUTTON), 'source', /rate limit/);
  const status = storage.getCircuitBreakerStatus();
  assert.equal(status.state, 'OPEN');
  assert.equal(status.isOpen, true);
  assert.equal(status.nextAttemptTime, reset * 1000);

  // Until the reset: no request at all.
  await rejectsWith(storage.get(BUTTON), 'source_unavailable');
  await rejectsWith(storage.get(CARD), 'source_unavailable');
  await rejectsWith(storage.get('components:react'), 'source_unavailable');
  assert.equal(await count(), 1);

  // At the reset: one probe, then a second success closes it (successThreshold 2).
  advanceTestClock((reset * 1000 - now - 1) / 1000);
  await rejectsWith(storage.get(BUTTON), 'source_unavailable');
  advanceTestClock(0.001);
  assert.equal(firstLine(await storage.get(BUTTON)), `// ${BASE}/ui/button.tsx`);
  assert.equal(await count(), 2);
  assert.equal(storage.getCircuitBreakerStatus().state, 'HALF_OPEN');
  assert.equal(firstLine(await storage.get(CARD)), `// ${BASE}/ui/card.tsx`);
  assert.equal(storage.getCircuitBreakerStatus().state, 'CLOSED');
  assert.equal(await count(), 3);
});

test('a 429 with Retry-After opens the breaker for that long', async (t) => {
  const { storage } = open(t, { testClock: true });
  // A minute on: the test clock is then well away from the system clock, so
  // a Retry-After counted from the system clock would give another time.
  advanceTestClock(60);
  await fault({ status: 429, headers: [['Retry-After', '30']], times: 1 });
  await rejectsWith(storage.get(BUTTON), 'source', /rate limit/);
  // 30 s from the failure's time on the test clock, to the millisecond.
  const status = storage.getCircuitBreakerStatus();
  assert.equal(status.state, 'OPEN');
  assert.equal(typeof status.lastFailureTime, 'number');
  assert.equal(status.nextAttemptTime, status.lastFailureTime + 30_000);

  // Until then, to its last millisecond: no request.
  await rejectsWith(storage.get(BUTTON), 'source_unavailable');
  advanceTestClock(29.999);
  await rejectsWith(storage.get(BUTTON), 'source_unavailable');
  assert.equal(await count(), 1);

  // At it: one probe.
  advanceTestClock(0.001);
  assert.equal(firstLine(await storage.get(BUTTON)), `// ${BASE}/ui/button.tsx`);
  assert.equal(storage.getCircuitBreakerStatus().state, 'HALF_OPEN');
  assert.deepEqual((await requests()).map((r) => r.status), [429, 200]);
});

test('getStats().source.rateLimit is what the API last said', async (t) => {
  const reset = nowS() + 3600;
  await control('rate_limit', { limit: 60, remaining: 42, reset });
  const { storage, path } = open(t);
  assert.equal(storage.getStats().source.rateLimit, null);
  // The raw host sends no figures.
  await storage.get(BUTTON);
  assert.equal(storage.getStats().source.rateLimit, null);
  await storage.get('components:react');
  const { limit, remaining, resetAt } = storage.getStats().source.rateLimit;
  assert.deepEqual({ limit, remaining }, { limit: 60, remaining: 41 });
  assert.ok(resetAt instanceof Date);
  assert.equal(resetAt.getTime(), reset * 1000);
  // Shared through the file: another storage on it sees them.
  const other = new HybridStorage(config(path));
  t.after(() => other.dispose());
  assert.deepEqual(other.getStats().source.rateLimit, { limit: 60, remaining: 41, resetAt: new Date(reset * 1000) });
  assert.equal(await count(), 2);
});

// ---- the token -------------------------------------------------------------------------

for (const [name, github] of [
  ['token', (token) => ({ token })],
  ['apiKey (with baseUrl)', (token) => ({ apiKey: token, apiUrl: undefined, baseUrl: urls.api })],
]) {
  test(`a redirect to another host is followed without the token given as ${name}`, async (t) => {
    const token = 'ghp_redirect_test_token_0123456789';
    const { storage } = open(t, { github: github(token) });
    await fault({ host: 'api', redirect: urls.other, times: 1 });
    // The listing's request goes to the API with the token, is sent on to
    // the other host (which serves no listing: not found), which must not see it.
    assert.equal(await storage.get('components:react'), undefined);
    assert.equal(firstLine(await storage.get(BUTTON)), `// ${BASE}/ui/button.tsx`);
    const log = await requests();
    const api = log.filter((r) => r.host === 'api');
    assert.equal(api.length, 1);
    assert.equal(api[0].authorization, `Bearer ${token}`);
    assert.equal(api[0].status, 302);
    const elsewhere = log.filter((r) => r.host !== 'api');
    assert.deepEqual(elsewhere.map((r) => r.host).sort(), ['other', 'raw']);
    for (const r of elsewhere) assert.equal(r.authorization, null, `${r.host} ${r.path}`);
  });
}

// ---- processes -------------------------------------------------------------------------

const child = fileURLToPath(new URL('./github-child.mjs', import.meta.url));

/** Runs github-child.mjs on `path` reading `key`; resolves to what it printed. */
async function inAnotherProcess(path, key) {
  const { stdout } = await promisify(execFile)(process.execPath, [
    child,
    JSON.stringify({ sqlite: { path }, github: { apiUrl: urls.api, rawUrl: urls.raw, timeout: 5 } }),
    key,
  ]);
  return JSON.parse(stdout);
}

test('another process honours this one\'s rate limit until closeCircuitBreaker()', async (t) => {
  const { storage, path } = open(t);
  const reset = nowS() + 60;
  await fault(rateLimited(reset));
  await rejectsWith(storage.get(BUTTON), 'source', /rate limit/);
  assert.equal(await count(), 1);

  assert.deepEqual(await inAnotherProcess(path, CARD), {
    code: 'source_unavailable', state: 'OPEN', nextAttemptTime: reset * 1000,
  });
  assert.equal(await count(), 1);

  // A hand close lifts the bar for every process.
  storage.closeCircuitBreaker();
  assert.deepEqual(await inAnotherProcess(path, CARD), { code: 'ok', state: 'CLOSED', nextAttemptTime: null });
  assert.equal(await count(), 2);
});

// ---- config ----------------------------------------------------------------------------

test('bad github configs are invalid_config naming the key', (t) => {
  const path = join(tempDir(t), 'c.db');
  for (const [github, message] of [
    [{ apiUrl: 'ftp://x' }, /github\.api_url/],
    [{ baseUrl: 'ftp://x' }, /github\.api_url/],
    [{ rawUrl: 'not a url' }, /github\.raw_url/],
    [{ timeout: 0 }, /github\.timeout/],
    [{ maxBodyBytes: 0 }, /github\.max_body_bytes/],
    [{ routes: 'nope' }, /preset/],
    [{ routes: [] }, /github\.routes is empty/],
    [{ routes: [{ key: 'doc:{name}', owner: 'me', repo: 'docs' }] }, /github\.routes\[0\]/],
    [{ token: '' }, /github\.token/],
    [{ apiKey: 'has space' }, /github\.token/],
    [{ tokn: 'x' }, /unknown key `github\.tokn`/],
    [{ api_url: 'http://a.test' }, /unknown key `github\.api_url`/],
    [{ token: 'ghp_a', apiKey: 'ghp_b' }, /`github\.apiKey` and `github\.token`/],
    [{ apiUrl: 'http://a.test', baseUrl: 'http://b.test' }, /`github\.apiUrl` and `github\.baseUrl`/],
  ]) {
    throwsWith(() => new HybridStorage({ sqlite: { path }, github }), 'invalid_config', message);
  }
  // A token never shows in the message.
  assert.throws(
    () => new HybridStorage({ sqlite: { path }, github: { token: 'ghp_a', apiKey: 'ghp_b' } }),
    (err) => !err.message.includes('ghp_a') && !err.message.includes('ghp_b'),
  );
  // GitHub and a source handed in: one or the other.
  throwsWith(
    () => new HybridStorage({ sqlite: { path }, github: {} }, { source: () => undefined }),
    'invalid_config',
    /github/,
  );
});
