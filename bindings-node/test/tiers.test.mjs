// The tiers: memory (L1) over a SQLite file (L2) shared by every storage
// and every process on the host.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { open, reopen } from './helpers.mjs';

const entry = fileURLToPath(new URL('../index.js', import.meta.url));

test('a write is served from memory, from sqlite by a second storage, then promoted', async (t) => {
  const { storage, path } = open(t);
  await storage.set('k', { v: 'shared' });
  assert.equal((await storage.lookup('k')).tier, 'memory');
  const other = reopen(t, path);
  const first = await other.lookup('k');
  assert.deepEqual(first.value, { v: 'shared' });
  assert.equal(first.tier, 'sqlite');
  assert.equal((await other.lookup('k')).tier, 'memory');
});

test('memory only: nothing reaches a file', async (t) => {
  const { storage } = open(t, { sqlite: { enabled: false } });
  await storage.set('k', 'v');
  assert.equal((await storage.lookup('k')).tier, 'memory');
  assert.deepEqual(storage.getStats().tiers.map((x) => x.tier), ['memory']);
});

test('sqlite only: every hit is served by sqlite', async (t) => {
  const { storage } = open(t, { memory: { enabled: false } });
  await storage.set('k', { v: 1 });
  for (let i = 0; i < 3; i++) {
    const hit = await storage.lookup('k');
    assert.deepEqual([hit.tier, hit.value], ['sqlite', { v: 1 }]);
  }
  assert.deepEqual(storage.getStats().tiers.map((x) => x.tier), ['sqlite']);
});

test('a value too large for L1 is kept in L2 only', async (t) => {
  const { storage } = open(t, { memory: { maxSize: 64 * 1024 } });
  const big = 'x'.repeat(32 * 1024);
  await storage.set('big', big);
  assert.equal((await storage.lookup('big')).tier, 'sqlite');
  assert.equal(await storage.get('big'), big);
});

function child(script, path) {
  const run = spawnSync(process.execPath, ['-e', script, entry, path], { encoding: 'utf8' });
  assert.equal(run.status, 0, `child failed: ${run.stderr}`);
  return run.stdout.trim();
}

test('a child process writes the file, the parent reads it', async (t) => {
  const { storage, path } = open(t);
  await storage.set('from-parent', { by: 'parent' });
  await storage.flush();
  const out = child(
    `const { HybridStorage } = require(process.argv[1]);
     (async () => {
       const s = new HybridStorage({ sqlite: { path: process.argv[2] } });
       const seen = await s.get('from-parent');
       await s.set('from-child', { by: 'child', pid: process.pid, seen });
       await s.set('bytes-from-child', Buffer.from([1, 2, 3]));
       await s.dispose();
       console.log(process.pid);
     })().catch((e) => { console.error(e); process.exit(1); });`,
    path,
  );
  const hit = await storage.lookup('from-child');
  assert.equal(hit.tier, 'sqlite');
  assert.deepEqual(hit.value, { by: 'child', pid: Number(out), seen: { by: 'parent' } });
  assert.deepEqual([...(await storage.getBuffer('bytes-from-child'))], [1, 2, 3]);
});

test('a child process deletes a key the parent wrote', async (t) => {
  const { storage, path } = open(t, { memory: { enabled: false } });
  await storage.set('k', 'v');
  const out = child(
    `const { HybridStorage } = require(process.argv[1]);
     (async () => {
       const s = new HybridStorage({ sqlite: { path: process.argv[2] } });
       console.log(await s.delete('k'));
       await s.dispose();
     })().catch((e) => { console.error(e); process.exit(1); });`,
    path,
  );
  assert.equal(out, 'true');
  assert.equal(await storage.get('k'), undefined);
});
