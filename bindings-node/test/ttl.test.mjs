// Time to live, in seconds (fractions allowed), in every tier.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { open, reopen, sleep } from './helpers.mjs';

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

test('a TTL of zero or less, null or absent takes the tier default', async (t) => {
  const { storage } = open(t);
  await storage.set('zero', 'z', 0);
  await storage.set('negative', 'n', -5);
  await storage.set('null', 'u', null);
  await storage.set('absent', 'a');
  await sleep(0.1);
  for (const key of ['zero', 'negative', 'null', 'absent']) {
    const meta = await storage.getMetadata(key);
    assert.equal(meta.expiresAt - meta.createdAt, 86_400_000, key);
  }
});

test('memory.ttl bounds L1 while sqlite keeps the entry', async (t) => {
  const { storage } = open(t, { memory: { ttl: 0.3 }, sqlite: { ttl: 60 } });
  await storage.set('k', 'v');
  assert.equal((await storage.lookup('k')).tier, 'memory');
  await sleep(0.45);
  assert.equal((await storage.lookup('k')).tier, 'sqlite');
  assert.equal((await storage.lookup('k')).tier, 'memory');
});

test('an expired entry is still reported by getMetadata while it may be served stale', async (t) => {
  const { storage } = open(t, { failSafe: { maxStale: 60 } });
  await storage.set('k', 'v', 0.2);
  await sleep(0.3);
  assert.equal(await storage.get('k'), undefined);
  const meta = await storage.getMetadata('k');
  assert.ok(meta.expiresAt < Date.now());
  assert.equal(meta.staleUntil - meta.expiresAt, 60_000);
});
