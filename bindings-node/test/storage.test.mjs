// Every method of HybridStorage on a real SQLite file.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HybridStorage, advanceTestClock } from 'tierstack';

import { open, reopen } from './helpers.mjs';

const component = {
  name: 'button',
  files: [{ path: 'ui/button.tsx', content: 'export const Button = () => <button />;' }],
  dependencies: ['@radix-ui/react-slot'],
  size: 1536,
  draft: false,
  nested: { x: 1.5, none: null },
};

test('a miss is undefined, a set value reads back equal', async (t) => {
  const { storage } = open(t);
  assert.equal(await storage.get('component:button'), undefined);
  assert.equal(await storage.set('component:button', component), undefined);
  assert.deepEqual(await storage.get('component:button'), component);
});

test('every JSON-able kind of value round-trips, null included', async (t) => {
  const { storage, path } = open(t);
  const values = {
    string: 'värde ✓ 日本',
    number: -12.5,
    integer: 9007199254740991,
    boolean: true,
    null: null,
    array: [1, 'two', { three: 3 }],
    empty: '',
    object: { 'clé': 'ünïcødé' },
  };
  for (const [key, value] of Object.entries(values)) await storage.set(key, value);
  for (const [key, value] of Object.entries(values)) assert.deepEqual(await storage.get(key), value, key);
  const other = reopen(t, path);
  for (const [key, value] of Object.entries(values)) assert.deepEqual(await other.get(key), value, key);
  assert.equal(await other.get('missing'), undefined);
});

test('a hit from memory returns the same object until the key is written again', async (t) => {
  const { storage } = open(t);
  await storage.set('k', { v: 1 });
  const first = await storage.get('k');
  assert.equal(await storage.get('k'), first);
  await storage.set('k', { v: 2 });
  const second = await storage.get('k');
  assert.notEqual(second, first);
  assert.deepEqual(second, { v: 2 });
  assert.equal(await storage.get('k'), second);
});

test('reads stay right while L1 evicts and decoded values are dropped', async (t) => {
  // A 64 KiB L1 holds a few dozen of these; the values kept decoded are
  // bounded by the same budget, so both evict throughout.
  const { storage } = open(t, { memory: { maxSize: 64 * 1024 } });
  const value = (i, round) => ({ i, round, pad: 'x'.repeat(1000 + (i % 7) * 100) });
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 200; i++) await storage.set(`k${i}`, value(i, round));
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < 200; i += 1 + (i % 3)) {
        assert.deepEqual(await storage.get(`k${i}`), value(i, round));
      }
    }
  }
  const [memory] = storage.getStats().tiers;
  assert.ok(memory.evictions > 0, 'L1 evicted');
  assert.ok(memory.bytes <= 64 * 1024);
});

test('values are stored as compact UTF-8 JSON', async (t) => {
  const { storage } = open(t);
  await storage.set('k', { a: [1, 2], b: 'é', c: { d: null } });
  assert.equal((await storage.getBuffer('k')).toString('utf8'), '{"a":[1,2],"b":"é","c":{"d":null}}');
});

test('Buffers and Uint8Arrays are stored as raw bytes and read with getBuffer', async (t) => {
  const { storage, path } = open(t);
  const bytes = Buffer.from([0, 1, 2, 0xfe, 0xff]);
  await storage.set('buf', bytes);
  await storage.set('u8', new Uint8Array([7, 8, 9]));
  await storage.set('empty', Buffer.alloc(0));
  assert.deepEqual(await storage.getBuffer('buf'), bytes);
  assert.ok(Buffer.isBuffer(await storage.getBuffer('u8')));
  assert.deepEqual([...(await storage.getBuffer('u8'))], [7, 8, 9]);
  assert.equal((await storage.getBuffer('empty')).length, 0);
  assert.equal(await storage.getBuffer('missing'), undefined);
  assert.deepEqual(await reopen(t, path).getBuffer('buf'), bytes);
});

test('lookupBuffer and mgetBuffer read raw bytes with the tier and as a Map', async (t) => {
  const { storage, path } = open(t);
  await storage.set('raw', Buffer.from([0xff, 1]));
  await storage.set('json', { a: 1 });
  const hit = await storage.lookupBuffer('raw');
  assert.deepEqual([[...hit.value], hit.tier, hit.stale], [[0xff, 1], 'memory', false]);
  assert.equal((await storage.lookupBuffer('json')).value.toString(), '{"a":1}');
  assert.equal(await storage.lookupBuffer('missing'), undefined);
  assert.equal((await reopen(t, path).lookupBuffer('raw')).tier, 'sqlite');
  const found = await storage.mgetBuffer(['json', 'missing', 'raw']);
  assert.ok(found instanceof Map);
  assert.deepEqual([...found.keys()], ['json', 'raw']);
  assert.ok(Buffer.isBuffer(found.get('raw')));
  assert.deepEqual([...found.get('raw')], [0xff, 1]);
});

test('bytes that are JSON read back as the value, and a value as its JSON bytes', async (t) => {
  const { storage } = open(t);
  await storage.set('json-bytes', Buffer.from('{"name":"card","tags":["a"]}'));
  assert.deepEqual(await storage.get('json-bytes'), { name: 'card', tags: ['a'] });
  await storage.set('text', 'hello');
  assert.equal((await storage.getBuffer('text')).toString(), '"hello"');
});

test('has and delete', async (t) => {
  const { storage } = open(t);
  assert.equal(await storage.has('k'), false);
  await storage.set('k', 1);
  assert.equal(await storage.has('k'), true);
  assert.equal(await storage.delete('k'), true);
  assert.equal(await storage.delete('k'), false);
  assert.equal(await storage.has('k'), false);
  assert.equal(await storage.get('k'), undefined);
});

test('a delete reaches the file: a new storage does not see the key', async (t) => {
  const { storage, path } = open(t);
  await storage.set('k', 'v');
  await storage.delete('k');
  assert.equal(await reopen(t, path).get('k'), undefined);
});

test('mget returns a Map of the found keys only, in the order asked', async (t) => {
  const { storage } = open(t);
  await storage.mset({ a: 1, b: { two: 2 }, c: [3] });
  const found = await storage.mget(['c', 'missing', 'a', 'b']);
  assert.ok(found instanceof Map);
  assert.deepEqual([...found.entries()], [['c', [3]], ['a', 1], ['b', { two: 2 }]]);
  const none = await storage.mget([]);
  assert.ok(none instanceof Map);
  assert.equal(none.size, 0);
});

test('mset takes a Map or a plain object, with a TTL', async (t) => {
  const { storage } = open(t);
  await storage.mset(new Map([['m1', 'one'], ['m2', Buffer.from('raw')]]));
  await storage.mset({ o1: { x: 1 }, o2: null }, 60);
  assert.equal(await storage.get('m1'), 'one');
  assert.equal((await storage.getBuffer('m2')).toString(), 'raw');
  assert.deepEqual(await storage.get('o1'), { x: 1 });
  assert.equal(await storage.get('o2'), null);
  assert.equal(await storage.size(), 4);
});

test('keys matches a glob where * is the only wildcard, sorted; size counts fresh keys', async (t) => {
  const { storage } = open(t);
  await storage.mset({ 'component:card': 1, 'component:button': 2, 'docs:intro': 3, 'comp?x': 4 });
  assert.deepEqual(await storage.keys(), ['comp?x', 'component:button', 'component:card', 'docs:intro']);
  assert.deepEqual(await storage.keys('component:*'), ['component:button', 'component:card']);
  assert.deepEqual(await storage.keys('comp?x'), ['comp?x']);
  assert.deepEqual(await storage.keys('*:intro'), ['docs:intro']);
  assert.deepEqual(await storage.keys('nothing*'), []);
  assert.deepEqual(await storage.keys(null), await storage.keys('*'));
  assert.equal(await storage.size(), 4);
});

test('clear empties every tier', async (t) => {
  const { storage, path } = open(t);
  await storage.mset({ a: 1, b: 2 });
  assert.equal(await storage.clear(), undefined);
  assert.equal(await storage.size(), 0);
  assert.equal(await storage.get('a'), undefined);
  assert.equal(await reopen(t, path).get('b'), undefined);
});

test('getMetadata reports Dates, the size of the value, its TTL in seconds and tags', async (t) => {
  const { storage } = open(t);
  const before = Date.now();
  await storage.set('k', { v: 'x' }, { ttl: 60, tags: ['ui', 'button'] });
  const after = Date.now();
  const meta = await storage.getMetadata('k');
  assert.deepEqual(Object.keys(meta).sort(), [
    'accessCount', 'accessedAt', 'createdAt', 'expiresAt', 'key', 'size', 'staleUntil', 'tags', 'ttl', 'updatedAt',
  ]);
  assert.ok(meta.createdAt instanceof Date);
  // The cache reads the kernel's coarse clock: never ahead of Date.now(),
  // behind it by up to a tick (4 ms), and by more when a loaded virtual
  // machine delays ticks.
  assert.ok(
    meta.createdAt >= before - 50 && meta.createdAt <= after + 1,
    `createdAt ${meta.createdAt.getTime()}, set between ${before} and ${after}`,
  );
  assert.equal(meta.expiresAt - meta.createdAt, 60_000);
  assert.equal(meta.staleUntil - meta.expiresAt, 86_400_000);
  assert.equal(meta.ttl, 60);
  assert.equal(meta.size, '{"v":"x"}'.length);
  assert.deepEqual([...meta.tags].sort(), ['button', 'ui']);
  assert.equal(meta.accessCount, 0);
  assert.equal(await storage.getMetadata('missing'), null);
});

test('lookup reports the value, the tier, staleness and age', async (t) => {
  // On the test clock, which stands still until moved: ages are exact.
  const clock = { testClock: true };
  const { storage, path } = open(t, clock);
  await storage.set('k', { v: 1 });
  assert.deepEqual(await storage.lookup('k'), { value: { v: 1 }, tier: 'memory', stale: false, age: 0 });
  advanceTestClock(2.5);
  assert.deepEqual(await storage.lookup('k'), { value: { v: 1 }, tier: 'memory', stale: false, age: 2.5 });
  assert.equal(await storage.lookup('missing'), undefined);
  const other = reopen(t, path, clock);
  assert.deepEqual(await other.lookup('k'), { value: { v: 1 }, tier: 'sqlite', stale: false, age: 2.5 });
  assert.deepEqual(await other.lookup('k'), { value: { v: 1 }, tier: 'memory', stale: false, age: 2.5 });
});

test('flush resolves once the writes are in the file', async (t) => {
  const { storage, path } = open(t);
  await storage.set('k', 'v');
  assert.equal(await storage.flush(), undefined);
  assert.equal(await reopen(t, path, { memory: { enabled: false } }).get('k'), 'v');
});

test('getCircuitBreakerStatus starts closed, and the manual controls open and close it', (t) => {
  const { storage } = open(t);
  const closed = {
    state: 'CLOSED', isOpen: false, failureCount: 0, isRequestAllowed: true, lastFailureTime: null,
    nextAttemptTime: null, trips: 0,
  };
  assert.deepEqual(storage.getCircuitBreakerStatus(), closed);
  assert.equal(storage.openCircuitBreaker(), undefined);
  assert.deepEqual(storage.getCircuitBreakerStatus(), {
    ...closed, state: 'OPEN', isOpen: true, isRequestAllowed: false, trips: 1,
  });
  storage.closeCircuitBreaker();
  assert.deepEqual(storage.getCircuitBreakerStatus(), { ...closed, trips: 1 });
});

test('dispose closes the storage; twice is fine', async (t) => {
  const { storage } = open(t);
  await storage.set('k', 'v');
  assert.equal(storage.isDisposed(), false);
  assert.equal(await storage.dispose(), undefined);
  assert.equal(storage.isDisposed(), true);
  assert.equal(await storage.dispose(), undefined);
  assert.equal(storage.isDisposed(), true);
});

test('the default config opens (the path from TIERSTACK_DB_PATH)', async (t) => {
  const { dir } = open(t);
  const previous = process.env.TIERSTACK_DB_PATH;
  process.env.TIERSTACK_DB_PATH = `${dir}/from-env.db`;
  t.after(() => {
    if (previous === undefined) delete process.env.TIERSTACK_DB_PATH;
    else process.env.TIERSTACK_DB_PATH = previous;
  });
  for (const config of [undefined, null, {}]) {
    const storage = new HybridStorage(config);
    await storage.set('k', config === undefined ? 'first' : 'again');
    await storage.dispose();
  }
  const check = new HybridStorage({ sqlite: { path: `${dir}/from-env.db` } });
  assert.equal(await check.get('k'), 'again');
  await check.dispose();
});
