// getOrLoad: a read that loads, stores and returns on a miss, with one
// loader call shared by concurrent callers of a key.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { open, rejectsWith, reopen, sleep } from './helpers.mjs';

test('a miss calls the loader once, stores its value, and later calls hit', async (t) => {
  const { storage, path } = open(t);
  let calls = 0;
  const loader = async () => {
    calls += 1;
    return { loaded: calls };
  };
  assert.deepEqual(await storage.getOrLoad('k', loader), { loaded: 1 });
  assert.deepEqual(await storage.getOrLoad('k', loader), { loaded: 1 });
  assert.equal(calls, 1);
  assert.deepEqual(await reopen(t, path).get('k'), { loaded: 1 });
});

test('concurrent calls for one key share one loader call', async (t) => {
  const { storage } = open(t);
  let calls = 0;
  const loader = async () => {
    calls += 1;
    await sleep(0.05);
    return { component: 'button' };
  };
  const results = await Promise.all(Array.from({ length: 20 }, () => storage.getOrLoad('k', loader)));
  assert.equal(calls, 1);
  for (const result of results) assert.deepEqual(result, { component: 'button' });
  const stats = storage.getStats();
  assert.deepEqual([stats.misses, stats.sets, stats.hits], [1, 1, 0]);
  // Different keys load separately.
  await Promise.all([storage.getOrLoad('x', loader), storage.getOrLoad('y', loader)]);
  assert.equal(calls, 3);
});

test('a synchronous loader and its TTL', async (t) => {
  const { storage } = open(t);
  assert.equal(await storage.getOrLoad('k', () => 'plain', 0.3), 'plain');
  const meta = await storage.getMetadata('k');
  assert.equal(meta.expiresAt - meta.createdAt, 300);
  await sleep(0.45);
  assert.equal(await storage.getOrLoad('k', () => 'again', { ttl: 60, tags: ['t'] }), 'again');
  assert.deepEqual((await storage.getMetadata('k')).tags, ['t']);
});

test("a loader's error rejects every waiting caller unchanged and stores nothing", async (t) => {
  const { storage } = open(t);
  class LoadError extends Error {}
  let calls = 0;
  const failing = async () => {
    calls += 1;
    await sleep(0.02);
    throw new LoadError('upstream is down');
  };
  const outcomes = await Promise.allSettled([storage.getOrLoad('k', failing), storage.getOrLoad('k', failing)]);
  assert.equal(calls, 1);
  for (const outcome of outcomes) {
    assert.equal(outcome.status, 'rejected');
    assert.ok(outcome.reason instanceof LoadError);
    assert.equal(outcome.reason.message, 'upstream is down');
  }
  await assert.rejects(storage.getOrLoad('k', () => { throw new LoadError('sync'); }), LoadError);
  assert.equal(await storage.has('k'), false);
  // The next call loads again.
  assert.equal(await storage.getOrLoad('k', () => 'recovered'), 'recovered');
});

test('a loaded value that cannot be stored rejects with invalid_value', async (t) => {
  const { storage } = open(t);
  await rejectsWith(storage.getOrLoad('k', async () => undefined), 'invalid_value');
  await rejectsWith(storage.getOrLoad('k', () => 10n), 'invalid_value');
  assert.equal(await storage.has('k'), false);
});

test('a loader may return bytes', async (t) => {
  const { storage } = open(t);
  const loaded = await storage.getOrLoad('k', () => Buffer.from([1, 2]));
  assert.deepEqual([...loaded], [1, 2]);
  assert.deepEqual([...(await storage.getBuffer('k'))], [1, 2]);
});

test('a loader that asks for its own key joins its own load', async (t) => {
  const { storage } = open(t);
  let inner;
  const value = await storage.getOrLoad('k', () => {
    inner = storage.getOrLoad('k', () => 'never called');
    return 'outer';
  });
  assert.equal(value, 'outer');
  assert.equal(await inner, 'outer');
});

test('the storage disposed during a load rejects with closed', async (t) => {
  const { storage } = open(t);
  const pending = storage.getOrLoad('k', async () => {
    await sleep(0.02);
    return 'late';
  });
  await storage.dispose();
  await rejectsWith(pending, 'closed');
});
