// Time to live, in seconds (fractions allowed), in every tier.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { open, rejectsWith, reopen, sleep } from './helpers.mjs';

test('a fractional TTL expires the entry in every tier', async (t) => {
  const { storage, path } = open(t);
  await storage.set('short', 's', 0.3);
  await storage.set('long', 'l', 60);
  assert.equal(await storage.get('short'), 's');
  await sleep(0.45);
  assert.equal(await storage.get('short'), undefined);
  assert.equal(await storage.has('short'), false);
  assert.equal(await storage.get('long'), 'l');
  assert.deepEqual(await storage.keys(), ['long']);
  assert.equal(await storage.size(), 1);
  assert.equal(await storage.delete('short'), false);
  const other = reopen(t, path);
  assert.equal(await other.get('short'), undefined);
  assert.equal(await other.get('long'), 'l');
});

test('the TTL may be given as { ttl }', async (t) => {
  const { storage } = open(t);
  await storage.set('k', { v: 1 }, { ttl: 0.3 });
  assert.deepEqual(await storage.get('k'), { v: 1 });
  await sleep(0.45);
  assert.equal(await storage.get('k'), undefined);
});

test('mset with a TTL', async (t) => {
  const { storage } = open(t);
  await storage.mset({ a: 1, b: 2 }, 0.3);
  assert.equal((await storage.mget(['a', 'b'])).size, 2);
  await sleep(0.45);
  assert.equal((await storage.mget(['a', 'b'])).size, 0);
});

test('a TTL of 0, -0, null or absent takes the tier default', async (t) => {
  const { storage } = open(t);
  await storage.set('zero', 'z', 0);
  await storage.set('minus-zero', 'm', -0);
  await storage.set('null', 'u', null);
  await storage.set('absent', 'a');
  await storage.set('options', 'o', { ttl: 0 });
  await storage.mset({ batch: 'b' }, 0);
  await sleep(0.1);
  for (const key of ['zero', 'minus-zero', 'null', 'absent', 'options', 'batch']) {
    const meta = await storage.getMetadata(key);
    assert.equal(meta.expiresAt - meta.createdAt, 86_400_000, key);
  }
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
  const { storage } = open(t, { memory: { ttl: 0.3 }, sqlite: { ttl: 60 } });
  await storage.set('k', 'v');
  assert.equal((await storage.lookup('k')).tier, 'memory');
  await sleep(0.45);
  assert.equal((await storage.lookup('k')).tier, 'sqlite');
  assert.equal((await storage.lookup('k')).tier, 'memory');
});

test('getMetadata reports an expired entry as null, even while it may be served stale', async (t) => {
  const { storage } = open(t, { failSafe: { maxStale: 60 } });
  await storage.set('k', 'v', 0.2);
  assert.equal((await storage.getMetadata('k')).staleUntil - (await storage.getMetadata('k')).expiresAt, 60_000);
  await sleep(0.3);
  assert.equal(await storage.get('k'), undefined);
  assert.equal(await storage.getMetadata('k'), null);
});
