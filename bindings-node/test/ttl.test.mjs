// Time to live, in seconds (fractions allowed), in every tier. The storages
// read the process's test clock (`testClock`), which `advanceTestClock`
// moves, so every expiry is checked at its exact moment without sleeping.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { advanceTestClock } from 'tierstack';

import { open, rejectsWith, reopen, throwsWith } from './helpers.mjs';

const CLOCK = { testClock: true };

test('a fractional TTL expires the entry in every tier', async (t) => {
  const { storage, path } = open(t, CLOCK);
  await storage.set('short', 's', 0.25);
  await storage.set('long', 'l', 60);
  assert.equal(await storage.get('short'), 's');
  advanceTestClock(0.125);
  assert.equal(await storage.get('short'), 's');
  advanceTestClock(0.125);
  assert.equal(await storage.get('short'), undefined);
  assert.equal(await storage.has('short'), false);
  assert.equal(await storage.get('long'), 'l');
  assert.deepEqual(await storage.keys(), ['long']);
  assert.equal(await storage.size(), 1);
  assert.equal(await storage.delete('short'), false);
  const other = reopen(t, path, CLOCK);
  assert.equal(await other.get('short'), undefined);
  assert.equal(await other.get('long'), 'l');
});

test('the TTL may be given as { ttl }', async (t) => {
  const { storage } = open(t, CLOCK);
  await storage.set('k', { v: 1 }, { ttl: 30 });
  assert.deepEqual(await storage.get('k'), { v: 1 });
  advanceTestClock(29.5);
  assert.deepEqual(await storage.get('k'), { v: 1 });
  advanceTestClock(0.5);
  assert.equal(await storage.get('k'), undefined);
});

test('mset with a TTL', async (t) => {
  const { storage } = open(t, CLOCK);
  await storage.mset({ a: 1, b: 2 }, 30);
  assert.deepEqual(await storage.mget(['a', 'b']), new Map([['a', 1], ['b', 2]]));
  advanceTestClock(29.5);
  assert.deepEqual(await storage.mget(['a', 'b']), new Map([['a', 1], ['b', 2]]));
  advanceTestClock(0.5);
  assert.deepEqual(await storage.mget(['a', 'b']), new Map());
});

test('a TTL of 0, -0, null or absent takes the tier default', async (t) => {
  const { storage } = open(t, CLOCK);
  await storage.set('zero', 'z', 0);
  await storage.set('minus-zero', 'm', -0);
  await storage.set('null', 'u', null);
  await storage.set('absent', 'a');
  await storage.set('options', 'o', { ttl: 0 });
  await storage.mset({ batch: 'b' }, 0);
  const keys = ['zero', 'minus-zero', 'null', 'absent', 'options', 'batch'];
  for (const key of keys) {
    const meta = await storage.getMetadata(key);
    assert.equal(meta.expiresAt - meta.createdAt, 86_400_000, key);
  }
  // sqlite.ttl, one day; memory.ttl (an hour) only bounds the L1 copy.
  advanceTestClock(86_399.5);
  assert.deepEqual(await storage.keys(), [...keys].sort());
  advanceTestClock(0.5);
  assert.deepEqual(await storage.keys(), []);
});

test('a negative, NaN, infinite or over-100-years TTL rejects with invalid_argument and stores nothing', async (t) => {
  const { storage } = open(t);
  await storage.set('k', 'old');
  const unusable = [-1, -1e-9, -86_400, NaN, Infinity, -Infinity, 1e12, 1e20, 3_153_600_001, Number.MAX_VALUE];
  for (const ttl of unusable) {
    for (const arg of [ttl, { ttl }]) {
      await rejectsWith(storage.set('k', 'new', arg), 'invalid_argument', /^ttl /);
      await rejectsWith(storage.set('other', 'new', arg), 'invalid_argument', /^ttl /);
      await rejectsWith(storage.mset({ k: 'new', other: 'new' }, arg), 'invalid_argument', /^ttl /);
      await rejectsWith(storage.getOrLoad('other', () => 'loaded', arg), 'invalid_argument', /^ttl /);
    }
  }
  assert.equal(await storage.get('k'), 'old');
  assert.equal(await storage.get('other'), undefined);
  assert.deepEqual(await storage.keys(), ['k']);
});

test('a TTL of 100 years is the longest accepted', async (t) => {
  const { storage } = open(t);
  await storage.set('century', 'c', 3_153_600_000);
  const meta = await storage.getMetadata('century');
  assert.equal(meta.expiresAt - meta.createdAt, 3_153_600_000_000);
});

test('unknown set options are refused, naming the option', async (t) => {
  const { storage } = open(t);
  await rejectsWith(storage.set('k', 1, { ttl: 1, tgs: ['x'] }), 'invalid_argument', /unknown option "tgs", expected one of: ttl, tags/);
  await rejectsWith(storage.mset({ k: 1 }, { TTL: 60 }), 'invalid_argument', /unknown option "TTL"/);
  await rejectsWith(storage.getOrLoad('k', () => 1, { ttl: 1, tag: 'x' }), 'invalid_argument', /unknown option "tag"/);
  await rejectsWith(storage.set('k', 1, { ['x'.repeat(1 << 20)]: 1 }), 'invalid_argument', /unknown option "x{64}…" \(1048576 bytes\)/);
  assert.equal(await storage.get('k'), undefined);
  // Inherited and symbol-keyed properties are not options of this call.
  await storage.set('k', 1, Object.assign(Object.create({ inherited: true }), { ttl: 60, [Symbol('s')]: 1 }));
  assert.equal(await storage.get('k'), 1);
});

test('memory.ttl bounds L1 while sqlite keeps the entry', async (t) => {
  const { storage } = open(t, { ...CLOCK, memory: { ttl: 30 }, sqlite: { ttl: 60 } });
  await storage.set('k', 'v');
  assert.equal((await storage.lookup('k')).tier, 'memory');
  advanceTestClock(29.5);
  assert.equal((await storage.lookup('k')).tier, 'memory');
  advanceTestClock(0.5);
  assert.equal((await storage.lookup('k')).tier, 'sqlite');
  assert.equal((await storage.lookup('k')).tier, 'memory');
});

test('getMetadata reports an expired entry as null, even while it may be served stale', async (t) => {
  const { storage } = open(t, { ...CLOCK, failSafe: { maxStale: 60 } });
  await storage.set('k', 'v', 30);
  const meta = await storage.getMetadata('k');
  assert.deepEqual([meta.expiresAt - meta.createdAt, meta.staleUntil - meta.expiresAt], [30_000, 60_000]);
  advanceTestClock(29.5);
  assert.deepEqual(await storage.getMetadata('k'), meta);
  advanceTestClock(0.5);
  assert.equal(await storage.get('k'), undefined);
  assert.equal(await storage.getMetadata('k'), null);
});

test('advanceTestClock moves only the storages on the test clock, and refuses a negative, NaN or infinite step', async (t) => {
  const clocked = open(t, CLOCK).storage;
  const wall = open(t).storage;
  await clocked.set('k', 'v', 30);
  await wall.set('k', 'v', 30);
  advanceTestClock(30);
  assert.equal(await clocked.get('k'), undefined);
  assert.equal(await wall.get('k'), 'v');
  for (const seconds of [-1, -1e-9, NaN, Infinity, -Infinity]) {
    throwsWith(() => advanceTestClock(seconds), 'invalid_argument', /^advanceTestClock: seconds must be/);
  }
  advanceTestClock(0);
  await clocked.set('k', 'again', 30);
  assert.equal(await clocked.get('k'), 'again');
});
