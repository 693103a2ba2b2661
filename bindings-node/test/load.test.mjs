// Loading: getOrLoad, getOrLoadMany, a source given at open (read-through),
// and what the engine does around every load (single-flight in the process
// and across processes, fail-safe stale copies, timeouts, the breaker,
// negative caching), seen from Node. TTLs, stale windows, negativeTtl and
// the breaker's open period run on the test clock (`testClock`, moved by
// `advanceTestClock`); loaders' own waits and load timeouts are real time.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { HybridStorage, Loaded, advanceTestClock } from 'tierstack';

import { open, rejectsWith, reopen, sleep, tempDir, throwsWith } from './helpers.mjs';

const CHILD = fileURLToPath(new URL('./load-child.mjs', import.meta.url));

/** A storage on a file in a temp dir, with `options` (a source...). */
function openWith(t, config, options) {
  const path = join(tempDir(t), 'cache.db');
  const storage = new HybridStorage({ ...config, sqlite: { path, ...config.sqlite } }, options);
  t.after(() => storage.dispose());
  return { storage, path };
}

/** A loader that counts its calls and answers with `answers[call]`
 * (a function of the key, or a value). */
function scripted(...answers) {
  const loader = async (key) => {
    const answer = answers[Math.min(loader.calls, answers.length - 1)];
    loader.calls += 1;
    loader.keys.push(key);
    return typeof answer === 'function' ? answer(key) : answer;
  };
  loader.calls = 0;
  loader.keys = [];
  return loader;
}

// Entries expire after 0.2 s and stay usable as stale copies; no
// refresh-ahead or jitter, so what the tests see is exact.
const CLOCK = { testClock: true };
const SHORT = { ...CLOCK, sqlite: { ttl: 30 }, memory: { ttl: 30 }, refreshAhead: 0, ttlJitter: 0 };

test('a miss calls the loader once with the key, stores its value, and later calls hit', async (t) => {
  const { storage, path } = open(t);
  const loader = scripted((key) => ({ loaded: key }));
  assert.deepEqual(await storage.getOrLoad('k', loader), { loaded: 'k' });
  assert.deepEqual(await storage.getOrLoad('k', loader), { loaded: 'k' });
  assert.deepEqual(loader.keys, ['k']);
  assert.deepEqual(await reopen(t, path).get('k'), { loaded: 'k' });
  const stats = storage.getStats();
  assert.deepEqual(
    [stats.hits, stats.misses, stats.source.requests, stats.source.successes],
    [{ memory: 1, sqlite: 0, redis: 0 }, 1, 1, 1],
  );
});

test('a getOrLoad miss and hit count each read once; the hit answers with the value get keeps', async (t) => {
  const { storage } = open(t);
  const loader = scripted((key) => ({ loaded: key }));
  assert.deepEqual(await storage.getOrLoad('k', loader), { loaded: 'k' }); // miss: loads
  const hit = await storage.getOrLoad('k', loader); // L1 hit
  assert.deepEqual(hit, { loaded: 'k' });
  assert.equal(loader.calls, 1);
  const stats = storage.getStats();
  assert.deepEqual(
    {
      hits: stats.hits,
      misses: stats.misses,
      memory: [stats.tiers[0].hits, stats.tiers[0].misses],
      sqlite: [stats.tiers[1].hits, stats.tiers[1].misses],
      requests: stats.source.requests,
    },
    { hits: { memory: 1, sqlite: 0, redis: 0 }, misses: 1, memory: [1, 1], sqlite: [0, 1], requests: 1 },
  );
  // While the entry is unchanged, hits of getOrLoad and get share one decoded value.
  assert.equal(await storage.getOrLoad('k', loader), hit);
  assert.equal(await storage.get('k'), hit);
  assert.deepEqual(await storage.getOrLoadBuffer('k', loader), Buffer.from('{"loaded":"k"}'));
  await storage.set('k', { loaded: 'again' });
  assert.deepEqual(await storage.getOrLoad('k', loader), { loaded: 'again' });
  assert.equal(loader.calls, 1);
  assert.deepEqual([storage.getStats().hits, storage.getStats().misses], [{ memory: 5, sqlite: 0, redis: 0 }, 1]);
});

test('a getOrLoad hit due for a refresh ahead answers at once and refreshes through its loader', async (t) => {
  const { storage } = open(t, { ...CLOCK, sqlite: { ttl: 2 }, memory: { ttl: 2 }, refreshAhead: 0.5, ttlJitter: 0 });
  await storage.set('k', 'v1');
  const loader = scripted('v2');
  assert.equal(await storage.getOrLoad('k', loader), 'v1'); // young: no refresh
  advanceTestClock(0.5);
  assert.equal(await storage.getOrLoad('k', loader), 'v1'); // a quarter of the TTL: no refresh
  assert.equal(loader.calls, 0);
  advanceTestClock(0.5); // half the TTL: due
  assert.equal(await storage.getOrLoad('k', loader), 'v1'); // the hit, answered before the refresh lands
  const deadline = Date.now() + 5000;
  while ((await storage.get('k')) !== 'v2') {
    assert.ok(Date.now() < deadline, 'the refresh never landed');
    await sleep(0.01);
  }
  assert.deepEqual(loader.keys, ['k']);
  assert.equal(storage.getStats().source.refreshes, 1);
});

test('100 concurrent misses of one key make one loader call', async (t) => {
  const { storage } = open(t);
  let calls = 0;
  const loader = async () => {
    calls += 1;
    await sleep(0.1);
    return { component: 'button' };
  };
  const results = await Promise.all(Array.from({ length: 100 }, () => storage.getOrLoad('k', loader)));
  assert.equal(calls, 1);
  for (const result of results) assert.deepEqual(result, { component: 'button' });
  const stats = storage.getStats();
  assert.equal(stats.source.requests, 1);
  assert.equal(stats.source.coalesced, 99);
  // Different keys load separately.
  await Promise.all([storage.getOrLoad('x', loader), storage.getOrLoad('y', loader)]);
  assert.equal(calls, 3);
});

test('loaders that use the libuv pool (fs.promises) do not deadlock it: 50 concurrent misses', async (t) => {
  const { storage, path } = open(t);
  const dir = join(path, '..');
  const loader = async (key) => {
    const file = join(dir, `${key}.txt`);
    await fsp.writeFile(file, key);
    return { key, read: await fsp.readFile(file, 'utf8') };
  };
  const keys = Array.from({ length: 50 }, (_, i) => `file-${i}`);
  const values = await Promise.all(keys.map((key) => storage.getOrLoad(key, loader)));
  assert.deepEqual(values, keys.map((key) => ({ key, read: key })));
  assert.equal(await storage.size(), 50);
});

test('a synchronous loader, the TTL argument, and a Loaded answer choosing its own TTL and tags', async (t) => {
  const { storage } = open(t, { ...CLOCK, ttlJitter: 0, refreshAhead: 0 });
  assert.equal(await storage.getOrLoad('k', () => 'plain', 0.3), 'plain');
  const meta = await storage.getMetadata('k');
  assert.equal(meta.expiresAt - meta.createdAt, 300);
  advanceTestClock(0.25);
  assert.equal(await storage.getOrLoad('k', () => 'not called'), 'plain');
  advanceTestClock(0.05);
  assert.equal(await storage.getOrLoad('k', () => 'again', { ttl: 60, tags: ['t'] }), 'again');
  assert.deepEqual((await storage.getMetadata('k')).tags, ['t']);
  assert.deepEqual(await storage.getOrLoad('own', () => new Loaded({ v: 1 }, { ttl: 0.5, tags: ['mine'] }), 60), { v: 1 });
  const own = await storage.getMetadata('own');
  assert.deepEqual([own.expiresAt - own.createdAt, own.tags], [500, ['mine']]);
  assert.deepEqual(await storage.get('own'), { v: 1 });
  throwsWith(() => new Loaded(() => {}), 'invalid_value');
  throwsWith(() => new Loaded(1, { ttl: -1 }), 'invalid_argument');
});

test("a loader's failure rejects every waiting caller with code source, its message, and the loader's error as cause", async (t) => {
  const { storage } = open(t);
  class LoadError extends Error {}
  let calls = 0;
  const thrown = new LoadError('upstream is down');
  const failing = async () => {
    calls += 1;
    await sleep(0.02);
    throw thrown;
  };
  const outcomes = await Promise.allSettled([storage.getOrLoad('k', failing), storage.getOrLoad('k', failing)]);
  assert.equal(calls, 1);
  for (const outcome of outcomes) {
    assert.equal(outcome.status, 'rejected');
    assert.ok(outcome.reason instanceof Error);
    assert.equal(outcome.reason.code, 'source');
    assert.match(outcome.reason.message, /upstream is down/);
    assert.equal(outcome.reason.cause, thrown);
  }
  // A synchronous throw, and a rejection with a non-Error.
  await assert.rejects(storage.getOrLoad('s', () => { throw new LoadError('sync'); }), (err) => {
    assert.equal(err.code, 'source');
    assert.ok(err.cause instanceof LoadError);
    assert.equal(err.cause.message, 'sync');
    return true;
  });
  await assert.rejects(storage.getOrLoad('r', () => Promise.reject('just a string')), (err) => {
    assert.deepEqual([err.code, err.cause], ['source', 'just a string']);
    assert.match(err.message, /just a string/);
    return true;
  });
  assert.deepEqual([await storage.has('k'), await storage.has('s'), await storage.size()], [false, false, 0]);
  // The next call loads again.
  assert.equal(await storage.getOrLoad('k', () => 'recovered'), 'recovered');
});

test('not found (undefined) is remembered for negativeTtl and never stored', async (t) => {
  const { storage } = open(t, { ...CLOCK, negativeTtl: 30 });
  const loader = scripted(undefined, 'now there');
  assert.equal(await storage.getOrLoad('gone', loader), undefined);
  assert.equal(await storage.getOrLoad('gone', loader), undefined);
  assert.equal(loader.calls, 1);
  assert.deepEqual([await storage.has('gone'), await storage.keys(), await storage.size()], [false, [], 0]);
  assert.equal(await storage.get('gone'), undefined);
  assert.deepEqual([storage.getStats().source.notFound, storage.getStats().source.negativeHits], [1, 1]);
  advanceTestClock(29.5);
  assert.equal(await storage.getOrLoad('gone', loader), undefined);
  assert.equal(loader.calls, 1);
  advanceTestClock(0.5);
  assert.equal(await storage.getOrLoad('gone', loader), 'now there');
  assert.equal(loader.calls, 2);
});

test('a loaded value that cannot be stored is a failure; bytes load with getOrLoadBuffer', async (t) => {
  const { storage } = open(t);
  await rejectsWith(storage.getOrLoad('k', () => 10n), 'invalid_value');
  assert.equal(await storage.has('k'), false);
  const loaded = await storage.getOrLoadBuffer('b', () => Buffer.from([1, 2]));
  assert.deepEqual([...loaded], [1, 2]);
  assert.deepEqual([...(await storage.getBuffer('b'))], [1, 2]);
});

test('getOrLoadMany hands the loader exactly the missing keys and returns a Map of those found', async (t) => {
  const { storage } = open(t);
  await storage.set('d', 'd0');
  assert.equal(await storage.getOrLoad('a', () => 'a1'), 'a1');
  const handed = [];
  const loader = async (keys) => {
    handed.push(keys);
    return new Map([['b', 'b1'], ['c', { c: 1 }], ['e', undefined]]);
  };
  const found = await storage.getOrLoadMany(['a', 'b', 'c', 'd', 'e'], loader);
  assert.deepEqual(handed, [['b', 'c', 'e']]);
  assert.deepEqual([...found], [['a', 'a1'], ['b', 'b1'], ['c', { c: 1 }], ['d', 'd0']]);
  // Now everything is answered by the tiers (e by the negative cache): no call.
  const again = await storage.getOrLoadMany(['a', 'b', 'c', 'd', 'e'], loader);
  assert.equal(handed.length, 1);
  assert.deepEqual([...again.keys()], ['a', 'b', 'c', 'd']);
  // A plain object answers too.
  const plain = await storage.getOrLoadMany(['x', 'y'], (keys) => ({ [keys[0]]: 'x1' }));
  assert.deepEqual([...plain], [['x', 'x1']]);
  await rejectsWith(storage.getOrLoadMany(['z'], () => { throw new Error('batch down'); }), 'source', /batch down/);
  await rejectsWith(storage.getOrLoadMany('a', loader), 'invalid_argument');
});

test('a source given at open: get, lookup and mget read through it', async (t) => {
  const source = scripted((key) => (key === 'missing' ? undefined : { from: key }));
  const { storage } = openWith(t, {}, { source });
  const loaded = await storage.lookup('a');
  assert.deepEqual([loaded.value, loaded.tier, loaded.stale], [{ from: 'a' }, 'source', false]);
  assert.deepEqual(await storage.get('a'), { from: 'a' });
  assert.deepEqual(await storage.lookup('a').then((l) => l.tier), 'memory');
  assert.deepEqual(await storage.get('b'), { from: 'b' });
  assert.equal(await storage.get('missing'), undefined);
  assert.deepEqual([...(await storage.mget(['a', 'c', 'missing']))], [['a', { from: 'a' }], ['c', { from: 'c' }]]);
  assert.deepEqual(source.keys, ['a', 'b', 'missing', 'c']);
  // has never loads.
  assert.equal(await storage.has('d'), false);
  assert.equal(source.calls, 4);
  // The same object on every L1 hit, as without a source.
  assert.equal(await storage.get('a'), await storage.get('a'));
});

test('a source may be { load }; store and remove are refused until writable sources exist', async (t) => {
  const { storage } = openWith(t, {}, { source: { load: async (key) => key.toUpperCase() } });
  assert.equal(await storage.get('abc'), 'ABC');
  const path = join(tempDir(t), 'other.db');
  throwsWith(() => new HybridStorage({ sqlite: { path } }, { source: { load() {}, store() {} } }), 'invalid_argument', /store/);
  throwsWith(() => new HybridStorage({ sqlite: { path } }, { source: 5 }), 'invalid_argument');
  throwsWith(() => new HybridStorage({ sqlite: { path } }, { sauce: () => 1 }), 'invalid_argument', /sauce/);
  throwsWith(() => new HybridStorage({ sqlite: { path } }, { markStale: 'yes' }), 'invalid_argument');
});

test('fail-safe: a failing source serves the stale copy, marked stale', async (t) => {
  const source = scripted({ v: 'old' }, () => { throw new Error('down'); });
  const { storage } = openWith(t, SHORT, { source });
  assert.deepEqual(await storage.get('k'), { v: 'old' });
  advanceTestClock(29.5);
  assert.deepEqual(await storage.lookup('k'), { value: { v: 'old' }, tier: 'memory', stale: false, age: 29.5 });
  assert.equal(source.calls, 1);
  advanceTestClock(0.5);
  const stale = await storage.lookup('k');
  assert.deepEqual([stale.value, stale.tier, stale.stale], [{ v: 'old' }, 'sqlite', true]);
  assert.deepEqual(await storage.get('k'), { v: 'old' });
  assert.equal(source.calls, 3);
  assert.equal(storage.getStats().source.staleServed, 2);
});

test('an open breaker serves the stale copy without calling the loader; without one, source_unavailable', async (t) => {
  const { storage } = open(t, SHORT);
  const loader = scripted('old', 'new');
  assert.equal(await storage.getOrLoad('k', loader), 'old');
  advanceTestClock(30);
  storage.openCircuitBreaker();
  assert.equal(await storage.getOrLoad('k', loader), 'old');
  await rejectsWith(storage.getOrLoad('other', loader), 'source_unavailable');
  assert.equal(loader.calls, 1);
  assert.equal(storage.getStats().source.rejected, 2);
  storage.closeCircuitBreaker();
  assert.equal(await storage.getOrLoad('k', loader), 'new');
  assert.equal(loader.calls, 2);
});

test('past the soft timeout the stale copy is served while the load goes on and then fills the tiers', async (t) => {
  let finished = false;
  let done;
  const landed = new Promise((resolve) => { done = resolve; });
  const source = scripted('old', async () => {
    await sleep(1);
    finished = true;
    done();
    return 'new';
  });
  const { storage, path } = openWith(t, { ...SHORT, failSafe: { softTimeout: 0.2, hardTimeout: 5 } }, { source });
  assert.equal(await storage.get('k'), 'old');
  advanceTestClock(30);
  const stale = await storage.lookup('k');
  assert.deepEqual([stale.value, stale.tier, stale.stale, finished], ['old', 'sqlite', true, false]);
  assert.equal(await storage.get('k'), 'old');
  await landed;
  await sleep(0.1);
  assert.equal(source.calls, 2);
  const fresh = await storage.lookup('k');
  assert.deepEqual([fresh.value, fresh.tier, fresh.stale], ['new', 'memory', false]);
  assert.equal(await reopen(t, path, CLOCK).get('k'), 'new');
});

test('without a stale copy: source, source_unavailable and timeout', async (t) => {
  const { storage } = open(t, { failSafe: { softTimeout: 0.1, hardTimeout: 0.3 } });
  await rejectsWith(storage.getOrLoad('a', () => { throw new Error('nope'); }), 'source', /nope/);
  await rejectsWith(storage.getOrLoad('b', () => sleep(1).then(() => 'late')), 'timeout');
  assert.equal(await storage.has('b'), false);
  storage.openCircuitBreaker();
  await rejectsWith(storage.getOrLoad('c', () => 'never'), 'source_unavailable');
  assert.deepEqual(storage.getStats().source.timeouts, 1);
});

test('getCircuitBreakerStatus after failures: OPEN, failureCount, isRequestAllowed false, isOpen true', async (t) => {
  const { storage } = open(t, { ...CLOCK, circuitBreaker: { threshold: 2, timeout: 60 } });
  // The test clock's time: it stands still until moved.
  await storage.set('now', 0);
  const now = (await storage.getMetadata('now')).createdAt.getTime();
  const failing = scripted(() => { throw new Error('down'); });
  await rejectsWith(storage.getOrLoad('a', failing), 'source');
  assert.deepEqual(
    [storage.getCircuitBreakerStatus().state, storage.getCircuitBreakerStatus().failureCount],
    ['CLOSED', 1],
  );
  await rejectsWith(storage.getOrLoad('b', failing), 'source');
  const status = storage.getCircuitBreakerStatus();
  assert.deepEqual(
    { ...status, lastFailureTime: undefined, nextAttemptTime: undefined },
    {
      state: 'OPEN', isOpen: true, failureCount: 2, isRequestAllowed: false, trips: 1,
      lastFailureTime: undefined, nextAttemptTime: undefined,
    },
  );
  // Milliseconds since the epoch, by the engine's clock; open for
  // circuitBreaker.timeout (60 s) plus a random jitter of up to 10%.
  assert.equal(status.lastFailureTime, now);
  const openFor = status.nextAttemptTime - now;
  assert.ok(openFor >= 60_000 && openFor <= 66_000, `open for ${openFor} ms`);
  await rejectsWith(storage.getOrLoad('c', failing), 'source_unavailable');
  assert.equal(failing.calls, 2);
  assert.deepEqual(storage.getStats().circuitBreaker, status);
});

test('markStale: stale object values come back with _stale: true; what is stored is unchanged', async (t) => {
  const source = scripted({ v: 'old' }, [1, 2], () => { throw new Error('down'); });
  const { storage } = openWith(t, SHORT, { source, markStale: true });
  assert.deepEqual(await storage.get('k'), { v: 'old' });
  assert.deepEqual(await storage.get('list'), [1, 2]);
  advanceTestClock(30);
  assert.deepEqual(await storage.get('k'), { v: 'old', _stale: true });
  const stale = await storage.lookup('k');
  assert.deepEqual([stale.value, stale.stale], [{ v: 'old', _stale: true }, true]);
  // Arrays are left as they are; the stored bytes have no mark.
  assert.deepEqual(await storage.get('list'), [1, 2]);
  assert.equal((await storage.getBuffer('k')).toString(), '{"v":"old"}');
  assert.deepEqual(await storage.getOrLoad('k', () => { throw new Error('down'); }), { v: 'old', _stale: true });

  // Off by default.
  const plain = openWith(t, SHORT, { source: scripted({ v: 'old' }, () => { throw new Error('down'); }) }).storage;
  assert.deepEqual(await plain.get('k'), { v: 'old' });
  advanceTestClock(30);
  assert.deepEqual(await plain.get('k'), { v: 'old' });
});

test('a loader that asks for its own key joins its own load', async (t) => {
  const { storage } = open(t);
  let inner;
  const loader = scripted(() => {
    inner = storage.getOrLoad('k', () => 'never called');
    return 'outer';
  });
  assert.equal(await storage.getOrLoad('k', loader), 'outer');
  assert.equal(await inner, 'outer');
  assert.equal(loader.calls, 1);
});

test('bad arguments reject with invalid_argument or invalid_key before any loader call', async (t) => {
  const { storage } = open(t);
  const loader = scripted('v');
  await rejectsWith(storage.getOrLoad('k', 'not a function'), 'invalid_argument');
  await rejectsWith(storage.getOrLoad(5, loader), 'invalid_argument');
  await rejectsWith(storage.getOrLoad('', loader), 'invalid_key');
  await rejectsWith(storage.getOrLoad('k', loader, -1), 'invalid_argument');
  await storage.set('held', 'v'); // an L1 hit checks its arguments too
  await rejectsWith(storage.getOrLoad('held', 'not a function'), 'invalid_argument');
  await rejectsWith(storage.getOrLoadBuffer('held', loader, { ttl: 'long' }), 'invalid_argument');
  assert.equal(loader.calls, 0);
});

/** Runs the child script; resolves to its stdout once it exits with 0. */
async function child(args) {
  const proc = spawn(process.execPath, [CHILD, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  proc.stdout.on('data', (chunk) => { out += chunk; });
  const [code] = await once(proc, 'exit');
  assert.equal(code, 0, `the child failed: ${out}`);
  return JSON.parse(out.trim());
}

test('4 processes x 10 concurrent calls on one file make exactly one loader call', async (t) => {
  const dir = tempDir(t);
  const db = join(dir, 'cache.db');
  const log = join(dir, 'calls.log');
  writeFileSync(log, '');
  const results = await Promise.all(Array.from({ length: 4 }, () => child([db, log, 'shared', '10', 'slow'])));
  const loaders = readFileSync(log, 'utf8').trim().split('\n');
  assert.equal(loaders.length, 1);
  for (const values of results) {
    assert.equal(values.length, 10);
    for (const value of values) assert.deepEqual(value, { loadedBy: Number(loaders[0]) });
  }
});

test('a lease holder killed mid-load: another process loads after it, and every caller gets the value', async (t) => {
  const dir = tempDir(t);
  const db = join(dir, 'cache.db');
  const log = join(dir, 'calls.log');
  writeFileSync(log, '');
  const holder = spawn(process.execPath, [CHILD, db, log, 'k', '1', 'hang'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(holder, 'exit');
  // Its loader has started: the lease in the file is its.
  for await (const chunk of holder.stdout) if (String(chunk).includes('loading')) break;
  const storage = new HybridStorage({ sqlite: { path: db }, failSafe: { hardTimeout: 1 } });
  t.after(() => storage.dispose());
  const loader = scripted('after the kill');
  const waiting = Array.from({ length: 10 }, () => storage.getOrLoad('k', loader));
  await sleep(0.1);
  holder.kill('SIGKILL');
  // Reaped: its pid no longer looks alive to the lease check.
  const [, signal] = await exited;
  assert.equal(signal, 'SIGKILL');
  const values = await Promise.all(waiting);
  assert.deepEqual(values, Array(10).fill('after the kill'));
  assert.equal(loader.calls, 1);
  assert.deepEqual(readFileSync(log, 'utf8').trim().split('\n'), [String(holder.pid)]);
  assert.equal(await reopen(t, db).get('k'), 'after the kill');
});
