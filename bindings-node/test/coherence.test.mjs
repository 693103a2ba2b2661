// L1 coherence between storages that share the file: the stats that count it.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { open, reopen } from './helpers.mjs';

const TAG = 'ui';

test('getStats counts what another storage on the file changed', async (t) => {
  const { storage, path } = open(t);
  await storage.set('k', 'v1');
  await storage.set('tagged', 1, { tags: [TAG] });
  // Its own L1, as another process has, checking the file on every access.
  const reader = reopen(t, path, { sqlite: { coherenceInterval: 0 } });
  assert.deepEqual([await reader.get('k'), await reader.get('tagged')], ['v1', 1]);
  assert.equal((await reader.lookup('k')).tier, 'memory');
  const counts = () => {
    const { invalidations, resyncs } = reader.getStats();
    return { invalidations, resyncs };
  };
  assert.deepEqual(counts(), { invalidations: 0, resyncs: 0 });

  await storage.set('k', 'v2'); // the reader's L1 entry is dropped: one invalidation
  const found = await reader.lookup('k');
  assert.deepEqual([found.value, found.tier], ['v2', 'sqlite']);
  assert.deepEqual(counts(), { invalidations: 1, resyncs: 0 });

  assert.equal(await storage.invalidateTag(TAG), 1);
  assert.equal(await reader.get('tagged'), undefined);
  assert.equal(await reader.has('tagged'), false);

  await storage.clear(); // the reader's L1 is emptied: one resync
  assert.equal(await reader.get('k'), undefined);
  assert.deepEqual([await reader.keys(), await reader.size()], [[], 0]);
  assert.equal(counts().resyncs, 1);
});
