// The StorageProvider contract of `HybridStorage`, written from the
// interface the MCP server programs against (get, set, has, delete, clear,
// mget, mset, getMetadata, keys, size, dispose, isDisposed) plus getStats,
// resetStats and the circuit breaker status: shapes, units and exact counts.
// Where time passes, the storages read the test clock (`testClock`), which
// only `advanceTestClock` moves, so times are compared exactly.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HybridStorage, advanceTestClock } from 'tierstack';

import { open, rejectsWith, reopen, throwsWith } from './helpers.mjs';

const CLOCK = { testClock: true };

const METADATA_KEYS = [
  'accessCount', 'accessedAt', 'createdAt', 'expiresAt', 'key', 'size', 'staleUntil', 'tags', 'ttl', 'updatedAt',
];
const BREAKER_KEYS = [
  'failureCount', 'isOpen', 'isRequestAllowed', 'lastFailureTime', 'nextAttemptTime', 'state', 'trips',
];
const CLOSED_BREAKER = {
  state: 'CLOSED', isOpen: false, failureCount: 0, isRequestAllowed: true, lastFailureTime: null,
  nextAttemptTime: null, trips: 0,
};

test('getMetadata: the StorageMetadata shape, Dates, size in bytes, ttl in seconds', async (t) => {
  const { storage } = open(t);
  const value = { name: 'button', source: 'export const Button = () => <button/>;', deps: ['ä'] };
  const before = Date.now();
  await storage.set('component:react:button', value, 60);
  const after = Date.now();
  const meta = await storage.getMetadata('component:react:button');
  assert.deepEqual(Object.keys(meta).sort(), METADATA_KEYS);
  for (const field of ['createdAt', 'updatedAt', 'accessedAt', 'expiresAt', 'staleUntil']) {
    assert.ok(meta[field] instanceof Date, `${field} is a Date`);
  }
  assert.equal(meta.key, 'component:react:button');
  // The bytes of the stored JSON text, as the design it replaces measured them.
  assert.equal(meta.size, Buffer.byteLength(JSON.stringify(value), 'utf8'));
  assert.equal(meta.ttl, 60);
  assert.equal(meta.accessCount, 0);
  assert.deepEqual(meta.tags, []);
  // The engine reads the kernel's coarse clock: behind Date.now() by up to a
  // tick (4 ms), and by more when a loaded machine delays ticks.
  const created = meta.createdAt.getTime();
  assert.ok(created >= before - 50 && created <= after, `createdAt ${created}, set between ${before} and ${after}`);
  assert.equal(meta.updatedAt.getTime(), meta.createdAt.getTime());
  assert.equal(meta.accessedAt.getTime(), meta.createdAt.getTime());
  assert.equal(meta.expiresAt - meta.updatedAt, 60_000);
  // Stale copies are kept for failSafe.maxStale (default one day) past expiry.
  assert.equal(meta.staleUntil - meta.expiresAt, 86_400_000);

  await storage.set('tagged', 'v', { ttl: 2.5, tags: ['ui', 'react'] });
  const tagged = await storage.getMetadata('tagged');
  assert.deepEqual([tagged.ttl, tagged.tags, tagged.size], [2.5, ['ui', 'react'], 3]);
  // Without a TTL: sqlite.ttl, the longest tier default (one day).
  await storage.set('default', 1);
  assert.equal((await storage.getMetadata('default')).ttl, 86_400);
  const bytes = Buffer.from([1, 2, 3, 4, 5]);
  await storage.set('bytes', bytes);
  assert.equal((await storage.getMetadata('bytes')).size, 5);

  assert.equal(await storage.getMetadata('missing'), null);
});

test('accessCount counts every read, memory hits included; getMetadata and has are not reads', async (t) => {
  const { storage, path } = open(t, CLOCK);
  await storage.set('k', { v: 1 });
  await storage.set('other', 2);
  advanceTestClock(1);
  for (let i = 0; i < 5; i += 1) assert.deepEqual(await storage.get('k'), { v: 1 }); // memory hits
  assert.equal((await storage.lookup('k')).tier, 'memory');
  assert.deepEqual(await storage.mget(['k', 'other', 'k']), new Map([['k', { v: 1 }], ['other', 2]]));
  assert.equal(await storage.has('k'), true);
  assert.equal((await storage.getMetadata('k')).accessCount, 8);
  assert.equal((await storage.getMetadata('k')).accessCount, 8);
  assert.equal((await storage.getMetadata('other')).accessCount, 1);
  // Written to the file and read back: nothing counted twice.
  await storage.flush();
  assert.equal((await storage.getMetadata('k')).accessCount, 8);

  // Another process on the file: one read from the file, one from its memory.
  const other = reopen(t, path, CLOCK);
  assert.equal((await other.lookup('k')).tier, 'sqlite');
  assert.equal((await other.lookup('k')).tier, 'memory');
  assert.equal((await other.getMetadata('k')).accessCount, 10);
  await other.dispose(); // hands its reads to the file
  assert.equal((await storage.getMetadata('k')).accessCount, 10);
  const meta = await storage.getMetadata('k');
  assert.equal(meta.accessedAt - meta.updatedAt, 1000, 'the latest read is a second after the write');
});

test('accessCount is exact without a SQLite file too', async (t) => {
  const { storage } = open(t, { sqlite: { enabled: false } });
  await storage.set('k', 'v', 30);
  for (let i = 0; i < 7; i += 1) await storage.get('k');
  const meta = await storage.getMetadata('k');
  assert.deepEqual([meta.accessCount, meta.ttl, meta.size], [7, 30, 3]);
  assert.equal(meta.staleUntil.getTime(), meta.expiresAt.getTime());
});

test('createdAt is the first write and stays across overwrites; updatedAt is the latest', async (t) => {
  const { storage } = open(t, CLOCK);
  await storage.set('k', 1);
  const first = await storage.getMetadata('k');
  await storage.get('k');
  await storage.get('k');
  advanceTestClock(0.25);
  await storage.set('k', 2, 10);
  const second = await storage.getMetadata('k');
  assert.equal(second.createdAt.getTime(), first.createdAt.getTime());
  assert.equal(second.updatedAt - first.updatedAt, 250);
  assert.equal(second.ttl, 10);
  assert.equal(second.expiresAt - second.updatedAt, 10_000);
  // The key's reads go on across the rewrite.
  assert.equal(second.accessCount, 2);
  await storage.get('k');
  assert.equal((await storage.getMetadata('k')).accessCount, 3);

  // A deleted key starts over.
  assert.equal(await storage.delete('k'), true);
  assert.equal(await storage.getMetadata('k'), null);
  advanceTestClock(0.25);
  await storage.set('k', 3);
  const third = await storage.getMetadata('k');
  assert.equal(third.createdAt - first.createdAt, 500);
  assert.equal(third.updatedAt.getTime(), third.createdAt.getTime());
  assert.equal(third.accessCount, 0);
});

test('TTLs are seconds: an expired key is gone from get, has, getMetadata, keys and size', async (t) => {
  const { storage } = open(t, CLOCK);
  await storage.set('short', 'v', 0.05);
  await storage.set('long', 'v', 60);
  assert.equal((await storage.getMetadata('short')).ttl, 0.05);
  assert.equal(await storage.size(), 2);
  advanceTestClock(0.05); // the TTL passes: no event stands for the time
  assert.equal(await storage.get('short'), undefined);
  assert.equal(await storage.has('short'), false);
  assert.equal(await storage.getMetadata('short'), null);
  assert.deepEqual(await storage.keys(), ['long']);
  assert.equal(await storage.size(), 1);
  assert.equal(await storage.get('long'), 'v');
});

test('keys: a glob where * is the only wildcard, sorted; size counts fresh keys', async (t) => {
  const { storage } = open(t);
  await storage.mset(new Map([
    ['component:react:card', 1],
    ['component:react:button', 2],
    ['block:react:login-01', 3],
    ['component:vue:button', 4],
    ['a?b', 5],
  ]));
  assert.deepEqual(await storage.keys(), [
    'a?b', 'block:react:login-01', 'component:react:button', 'component:react:card', 'component:vue:button',
  ]);
  assert.deepEqual(await storage.keys('component:react:*'), ['component:react:button', 'component:react:card']);
  assert.deepEqual(await storage.keys('*:react:*'), [
    'block:react:login-01', 'component:react:button', 'component:react:card',
  ]);
  assert.deepEqual(await storage.keys('*button'), ['component:react:button', 'component:vue:button']);
  // ? and [ are themselves, not wildcards.
  assert.deepEqual(await storage.keys('a?b'), ['a?b']);
  assert.deepEqual(await storage.keys('a?*'), ['a?b']);
  assert.deepEqual(await storage.keys('component:react:butto?'), []);
  assert.deepEqual(await storage.keys('[c]*'), []);
  assert.deepEqual(await storage.keys('component:react:button'), ['component:react:button']);
  assert.equal(await storage.size(), 5);
  assert.equal(await storage.delete('a?b'), true);
  assert.equal(await storage.size(), 4);
  await storage.clear();
  assert.equal(await storage.size(), 0);
  assert.deepEqual(await storage.keys(), []);
});

test('mget: a Map of the found keys only, in the order asked; mset takes a Map and a TTL', async (t) => {
  const { storage } = open(t);
  await storage.mset(new Map([['a', { n: 1 }], ['b', [2]], ['c', 'three']]), 30);
  assert.equal((await storage.getMetadata('b')).ttl, 30);
  const found = await storage.mget(['c', 'missing', 'a', 'b']);
  assert.ok(found instanceof Map);
  assert.deepEqual([...found.keys()], ['c', 'a', 'b']);
  assert.deepEqual(found, new Map([['c', 'three'], ['a', { n: 1 }], ['b', [2]]]));
  const none = await storage.mget(['x', 'y']);
  assert.ok(none instanceof Map);
  assert.equal(none.size, 0);
  assert.deepEqual(await storage.mget([]), new Map());
});

test('dispose: isDisposed turns true, every later call rejects (or throws) with code closed', async (t) => {
  const { storage } = open(t);
  await storage.set('k', 'v');
  assert.equal(storage.isDisposed(), false);
  await storage.dispose();
  assert.equal(storage.isDisposed(), true);
  const calls = {
    get: () => storage.get('k'),
    set: () => storage.set('k', 'w'),
    has: () => storage.has('k'),
    delete: () => storage.delete('k'),
    clear: () => storage.clear(),
    mget: () => storage.mget(['k']),
    mset: () => storage.mset(new Map([['k', 1]])),
    getMetadata: () => storage.getMetadata('k'),
    keys: () => storage.keys(),
    size: () => storage.size(),
  };
  for (const [name, call] of Object.entries(calls)) {
    await rejectsWith(call(), 'closed').catch((e) => {
      throw new Error(`${name}: ${e.message}`);
    });
  }
  throwsWith(() => storage.getStats(), 'closed');
  throwsWith(() => storage.resetStats(), 'closed');
  throwsWith(() => storage.getCircuitBreakerStatus(), 'closed');
  await storage.dispose(); // a second dispose is harmless
  assert.equal(storage.isDisposed(), true);
});

test('getStats: the fields the server reads, their types, and their values after a known sequence', async (t) => {
  const { storage, path } = open(t);
  assert.equal(await storage.get('a'), undefined); // a miss
  await storage.set('a', { v: 1 });
  await storage.set('c', 'c');
  for (let i = 0; i < 3; i += 1) await storage.get('a'); // three memory hits
  await storage.mget(['a', 'b']); // a memory hit and a miss
  assert.equal(await storage.delete('a'), true);

  const stats = storage.getStats();
  assert.deepEqual(stats.hits, { memory: 4, sqlite: 0, redis: 0 });
  assert.equal(stats.misses, 2);
  // In percent, as the design it replaces reported it.
  assert.equal(stats.hitRate, (100 * 4) / 6);
  assert.equal(stats.totalOperations, 4 + 2 + 2 + 1);
  assert.deepEqual([stats.sets, stats.deletes], [2, 1]);
  assert.deepEqual(Object.keys(stats.avgResponseTimes).sort(), ['memory', 'redis', 'sqlite']);
  assert.equal(typeof stats.avgResponseTimes.memory, 'number');
  assert.equal(stats.avgResponseTimes.sqlite, 0); // no read reached the file
  assert.deepEqual(stats.tierAvailability, { memory: true, sqlite: true, redis: false, source: false });
  assert.deepEqual(stats.circuitBreaker, CLOSED_BREAKER);

  // Another process on the file: one read answered by the file, in ms.
  const other = reopen(t, path);
  assert.equal(await other.get('c'), 'c');
  const second = other.getStats();
  assert.deepEqual([second.hits, second.misses, second.hitRate], [{ memory: 0, sqlite: 1, redis: 0 }, 0, 100]);
  assert.ok(second.avgResponseTimes.sqlite > 0, 'the file read was timed');
  assert.equal(second.avgResponseTimes.sqlite, second.tiers[1].avgTimeUs / 1000);

  storage.resetStats();
  const reset = storage.getStats();
  assert.deepEqual(
    [reset.hits, reset.misses, reset.hitRate, reset.totalOperations, reset.sets, reset.deletes],
    [{ memory: 0, sqlite: 0, redis: 0 }, 0, 0, 0, 0, 0],
  );
  assert.deepEqual(reset.avgResponseTimes, { memory: 0, sqlite: 0, redis: 0 });
  // Counters go back to zero; what the tiers hold does not.
  assert.equal(await storage.get('c'), 'c');
  assert.deepEqual(storage.getStats().hits, { memory: 1, sqlite: 0, redis: 0 });
});

test('getStats without a SQLite file: the tier is reported unavailable', async (t) => {
  const { storage } = open(t, { sqlite: { enabled: false } });
  await storage.set('k', 1);
  await storage.get('k');
  const stats = storage.getStats();
  assert.deepEqual(stats.tierAvailability, { memory: true, sqlite: false, redis: false, source: false });
  assert.deepEqual([stats.hits, stats.hitRate], [{ memory: 1, sqlite: 0, redis: 0 }, 100]);
});

test('the circuit breaker status: the names of the design it replaces, in getStats too', async (t) => {
  const failing = () => { throw new Error('down'); };
  const { storage } = open(t, { ...CLOCK, circuitBreaker: { threshold: 2, timeout: 60 } });
  // The test clock's time: it stands still until moved.
  await storage.set('now', 0);
  const now = (await storage.getMetadata('now')).createdAt.getTime();
  const status = storage.getCircuitBreakerStatus();
  assert.deepEqual(Object.keys(status).sort(), BREAKER_KEYS);
  assert.deepEqual(status, CLOSED_BREAKER);

  await rejectsWith(storage.getOrLoad('a', failing), 'source');
  assert.deepEqual(
    [storage.getCircuitBreakerStatus().state, storage.getCircuitBreakerStatus().failureCount],
    ['CLOSED', 1],
  );
  await rejectsWith(storage.getOrLoad('b', failing), 'source');
  const open2 = storage.getCircuitBreakerStatus();
  assert.deepEqual(
    [open2.state, open2.isOpen, open2.failureCount, open2.isRequestAllowed, open2.trips],
    ['OPEN', true, 2, false, 1],
  );
  assert.equal(typeof open2.lastFailureTime, 'number');
  assert.equal(open2.lastFailureTime, now);
  // Open for circuitBreaker.timeout (60 s) plus a jitter of up to 10%.
  const openFor = open2.nextAttemptTime - open2.lastFailureTime;
  assert.ok(openFor >= 60_000 && openFor <= 66_000, `open for ${openFor} ms`);
  assert.deepEqual(storage.getStats().circuitBreaker, open2);

  storage.closeCircuitBreaker();
  assert.deepEqual({ ...storage.getCircuitBreakerStatus(), lastFailureTime: null, trips: 0 }, CLOSED_BREAKER);
  storage.openCircuitBreaker();
  const opened = storage.getCircuitBreakerStatus();
  assert.deepEqual([opened.state, opened.isRequestAllowed, opened.trips], ['OPEN', false, 2]);
});

test('tierAvailability.source: a configured source whose breaker admits calls', async (t) => {
  const { storage } = open(t);
  assert.equal(storage.getStats().tierAvailability.source, false);
  const withSource = new HybridStorage(
    { sqlite: { enabled: false } },
    { source: async (key) => (key === 'known' ? { found: key } : undefined) },
  );
  t.after(() => withSource.dispose());
  assert.deepEqual(await withSource.get('known'), { found: 'known' });
  assert.equal(await withSource.get('unknown'), undefined);
  assert.equal(withSource.getStats().tierAvailability.source, true);
  withSource.openCircuitBreaker();
  assert.equal(withSource.getStats().tierAvailability.source, false);
  withSource.closeCircuitBreaker();
  assert.equal(withSource.getStats().tierAvailability.source, true);
});
