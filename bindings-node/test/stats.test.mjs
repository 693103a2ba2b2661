// getStats: the field names of the design it replaces, and exact counts.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { open, reopen } from './helpers.mjs';

test('getStats has the documented fields', (t) => {
  const { storage } = open(t);
  const stats = storage.getStats();
  assert.deepEqual(Object.keys(stats).sort(), [
    'avgResponseTimes', 'circuitBreaker', 'deletes', 'hitRate', 'hits', 'invalidations', 'misses', 'outbox',
    'redis', 'resyncs', 'sets', 'source', 'sqliteRebuilds', 'sqliteReopens', 'tierAvailability', 'tiers',
    'totalOperations',
  ]);
  // No outbox but with write-behind; no Redis without a redis section.
  assert.equal(stats.outbox, null);
  assert.equal(stats.redis, null);
  assert.equal(storage.outboxStats(), null);
  assert.deepEqual(stats.source, {
    requests: 0, successes: 0, failures: 0, timeouts: 0, notFound: 0, rejected: 0, coalesced: 0,
    coalescedProcesses: 0, coalescedMachines: 0, staleServed: 0, negativeHits: 0, refreshes: 0, rateLimit: null,
  });
  assert.deepEqual(stats.circuitBreaker, {
    state: 'CLOSED', isOpen: false, failureCount: 0, isRequestAllowed: true, lastFailureTime: null,
    nextAttemptTime: null, trips: 0,
  });
  assert.deepEqual(Object.keys(stats.avgResponseTimes).sort(), ['memory', 'redis', 'sqlite']);
  assert.deepEqual(stats.tiers.map((x) => x.tier), ['memory', 'sqlite']);
  assert.deepEqual(Object.keys(stats.tiers[0]).sort(), [
    'avgTimeUs', 'bytes', 'entries', 'evictions', 'hits', 'maxBytes', 'misses', 'tier',
  ]);
  assert.deepEqual(
    {
      hits: stats.hits,
      misses: stats.misses,
      hitRate: stats.hitRate,
      totalOperations: stats.totalOperations,
      invalidations: stats.invalidations,
      resyncs: stats.resyncs,
    },
    { hits: { memory: 0, sqlite: 0, redis: 0 }, misses: 0, hitRate: 0, totalOperations: 0, invalidations: 0, resyncs: 0 },
  );
  assert.equal(stats.tiers[0].maxBytes, 52_428_800);
  assert.equal(stats.tiers[1].maxBytes, 104_857_600);
});

test('getStats counts every read, write and delete exactly', async (t) => {
  const { storage, path } = open(t, { memory: { maxSize: 1_000_000 } });
  assert.equal(await storage.get('a'), undefined); // miss in both tiers
  await storage.set('a', { v: 1 });
  await storage.get('a'); // memory hit
  await storage.get('a'); // memory hit (the kept value)
  await storage.lookup('a'); // memory hit
  await storage.getBuffer('a'); // memory hit
  assert.equal(await storage.has('a'), true); // not a read
  await storage.mget(['a', 'b']); // one memory hit, one miss in both tiers
  await storage.mset({ c: 1, d: 2 }); // two sets
  assert.equal(await storage.delete('a'), true);
  assert.equal(await storage.delete('a'), false); // held nothing: not counted
  const stats = storage.getStats();
  assert.deepEqual(stats.hits, { memory: 5, sqlite: 0, redis: 0 });
  assert.equal(stats.misses, 2);
  assert.equal(stats.hitRate, (100 * 5) / 7);
  assert.equal(stats.sets, 3);
  assert.equal(stats.deletes, 1);
  assert.equal(stats.totalOperations, 5 + 2 + 3 + 1);
  const [memory, sqlite] = stats.tiers;
  assert.deepEqual([memory.tier, memory.hits, memory.misses, memory.entries, memory.maxBytes], ['memory', 5, 2, 2, 1_000_000]);
  assert.deepEqual([sqlite.tier, sqlite.hits, sqlite.misses, sqlite.entries], ['sqlite', 0, 2, 2]);

  await storage.flush();
  const other = reopen(t, path);
  assert.equal(await other.get('c'), 1); // an L2 hit, promoted
  assert.equal(await other.get('c'), 1); // then a memory hit
  const second = other.getStats();
  assert.deepEqual([second.hits, second.misses, second.sets], [{ memory: 1, sqlite: 1, redis: 0 }, 0, 0]);
  assert.deepEqual(second.tiers.map((x) => [x.tier, x.hits, x.misses]), [['memory', 1, 1], ['sqlite', 1, 0]]);
  assert.ok(second.avgResponseTimes.sqlite > 0, 'the L2 read was timed');
  assert.equal(second.avgResponseTimes.sqlite, second.tiers[1].avgTimeUs / 1000);
});

test('a memory-only storage reports no sqlite time', async (t) => {
  const { storage } = open(t, { sqlite: { enabled: false } });
  await storage.set('k', 1);
  await storage.get('k');
  const stats = storage.getStats();
  assert.equal(stats.avgResponseTimes.sqlite, 0);
  assert.deepEqual([stats.hits, stats.sets, stats.tiers.length], [{ memory: 1, sqlite: 0, redis: 0 }, 1, 1]);
});
