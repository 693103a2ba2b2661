// The decoded values kept for L1 entries: every read that L1 answers (`get`,
// `lookup`, `mget`) hands back the same object while the entry is
// unchanged, for everything L1 holds (the kept values are bounded by the
// memory budget, not by a count), and a new object once the key is written
// again, by this storage or by another process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { HybridStorage } from 'tierstack';

import { open, tempDir } from './helpers.mjs';

const WRITER = fileURLToPath(new URL('./kept-writer.mjs', import.meta.url));
const COUNT = 10_000;
const keys = Array.from({ length: COUNT }, (_, i) => `component:react:button-${i}`);

/** A UI component of ~1.75 KB of JSON: 10,000 of them are over 16 MiB. */
function component(i, version = 1) {
  return {
    name: `button-${i}`,
    version,
    dependencies: ['@radix-ui/react-slot', 'class-variance-authority'],
    source: `export function Button${i}() { return <button className="btn" /> }\n`.repeat(26),
  };
}

/** Every key's value read through `get`, `lookup` and `mget` (batches of 100), checked to be one object. */
async function readAll(storage) {
  const got = new Map();
  for (const key of keys) {
    const value = await storage.get(key);
    const found = await storage.lookup(key);
    assert.equal(found.tier, 'memory', key);
    assert.equal(found.value, value, `lookup of ${key} gave another object than get`);
    got.set(key, value);
  }
  for (let i = 0; i < COUNT; i += 100) {
    const batch = keys.slice(i, i + 100);
    const map = await storage.mget(batch);
    assert.deepEqual([...map.keys()], batch);
    for (const key of batch) assert.equal(map.get(key), got.get(key), `mget of ${key} gave another object than get`);
  }
  return got;
}

/** Stores `value` under `key` from another process sharing the file. */
async function writeFromAnotherProcess(path, key, value) {
  const child = spawn(process.execPath, [WRITER, path, key, JSON.stringify(value)], { stdio: 'inherit' });
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, 'the writer process failed');
}

test('get, lookup and mget of 10,000 ~1.7 KB objects return the same object until the entry changes', async (t) => {
  // Every access checks the file for other processes' changes.
  const { storage, path } = open(t, { sqlite: { coherenceInterval: 0 } });
  const values = keys.map((_, i) => component(i));
  assert.ok(values.reduce((n, v) => n + JSON.stringify(v).length, 0) > 16 * 1024 * 1024);
  await storage.mset(new Map(keys.map((key, i) => [key, values[i]])));

  const first = await readAll(storage);
  keys.forEach((key, i) => assert.deepEqual(first.get(key), values[i], key));
  // Read again: nothing was parsed again, whichever method read first.
  const again = await readAll(storage);
  for (const key of keys) assert.equal(again.get(key), first.get(key), `${key} was decoded again`);

  // A write through this storage: a new object, then that one on every read.
  const mine = keys[1];
  await storage.set(mine, component(1, 2));
  const written = await storage.get(mine);
  assert.notEqual(written, first.get(mine));
  assert.deepEqual(written, component(1, 2));
  assert.equal((await storage.lookup(mine)).value, written);
  assert.equal((await storage.mget([mine])).get(mine), written);
  assert.equal(await storage.get(mine), written);

  // A write from another process: a new object, then that one on every read.
  const theirs = keys[2];
  await writeFromAnotherProcess(path, theirs, component(2, 3));
  const found = await storage.lookup(theirs);
  assert.equal(found.tier, 'sqlite');
  assert.deepEqual(found.value, component(2, 3));
  assert.notEqual(found.value, first.get(theirs));
  const kept = await storage.get(theirs);
  assert.deepEqual(kept, component(2, 3));
  assert.equal((await storage.lookup(theirs)).value, kept);
  assert.equal((await storage.mget([theirs, mine])).get(theirs), kept);
  assert.equal(await storage.get(theirs), kept);

  // The keys nobody wrote still read as the objects first read.
  const after = await readAll(storage);
  for (const key of keys.filter((k) => k !== mine && k !== theirs)) {
    assert.equal(after.get(key), first.get(key), `${key} was decoded again`);
  }
  assert.equal(after.get(mine), written);
  assert.equal(after.get(theirs), kept);

  // A delete: the key reads as missing everywhere.
  await storage.delete(keys[3]);
  assert.equal(await storage.get(keys[3]), undefined);
  assert.equal((await storage.mget([keys[3], keys[4]])).has(keys[3]), false);
  assert.equal((await storage.mget([keys[3], keys[4]])).get(keys[4]), first.get(keys[4]));
});

test('mget answers memory hits, file hits and misses together, in the order asked', async (t) => {
  const { storage, path } = open(t);
  await storage.mset({ a: { v: 'a' }, b: { v: 'b' } });
  const a = await storage.get('a');
  // `c` only in the file: written by another process, absent from this L1.
  await writeFromAnotherProcess(path, 'c', { v: 'c' });
  const found = await storage.mget(['c', 'missing', 'a', 'b', 'a']);
  assert.deepEqual([...found.keys()], ['c', 'a', 'b']);
  assert.deepEqual([...found.values()], [{ v: 'c' }, { v: 'a' }, { v: 'b' }]);
  assert.equal(found.get('a'), a);
  // `c` was promoted: from now on the same object every time.
  const c = (await storage.mget(['c'])).get('c');
  assert.equal((await storage.mget(['c'])).get('c'), c);
  assert.equal(await storage.get('c'), c);
  const bytes = await storage.mgetBuffer(['b', 'missing', 'c']);
  assert.deepEqual([...bytes.keys()], ['b', 'c']);
  assert.equal(bytes.get('b').toString(), '{"v":"b"}');
});

test('with a source, get, lookup and mget hits return the same object until the entry changes', async (t) => {
  const path = join(tempDir(t), 'cache.db');
  let loads = 0;
  const source = async (key) => {
    loads++;
    return { key, load: loads };
  };
  const storage = new HybridStorage({ sqlite: { path, coherenceInterval: 0 } }, { source });
  t.after(() => storage.dispose());
  assert.deepEqual((await storage.mget(['a', 'b'])).get('a'), { key: 'a', load: 1 });
  const a = await storage.get('a');
  assert.deepEqual(a, { key: 'a', load: 1 });
  assert.equal(await storage.get('a'), a);
  const found = await storage.lookup('a');
  assert.deepEqual([found.value === a, found.tier], [true, 'memory']);
  // Hits and a load in one call: the hit is the kept object.
  const map = await storage.mget(['c', 'a', 'b']);
  assert.deepEqual([...map.keys()], ['c', 'a', 'b']);
  assert.equal(map.get('a'), a);
  assert.equal(map.get('b'), await storage.get('b'));
  assert.equal(loads, 3);
  await writeFromAnotherProcess(path, 'a', { key: 'a', load: 'elsewhere' });
  const fromFile = await storage.lookup('a');
  assert.deepEqual([fromFile.value, fromFile.tier], [{ key: 'a', load: 'elsewhere' }, 'sqlite']);
  const changed = await storage.get('a');
  assert.deepEqual(changed, { key: 'a', load: 'elsewhere' });
  assert.notEqual(changed, a);
  assert.equal((await storage.mget(['a'])).get('a'), changed);
  assert.equal((await storage.lookup('a')).value, changed);
  assert.equal(loads, 3);
});
