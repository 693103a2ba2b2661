// Every error code reachable from JS, and that a refused call changes nothing.
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { HybridStorage } from 'tierstack';

import { open, rejectsWith, tempDir, throwsWith } from './helpers.mjs';

test('invalid_config: unknown, snake_case and unsupported keys, wrong types, bad values', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c.db');
  const cases = [
    [{ memroy: {} }, /unknown key `memroy`/],
    [{ memory: { max_bytes: 1 } }, /unknown key `memory.max_bytes`/],
    [{ fail_safe: {} }, /unknown key `fail_safe`/],
    [{ circuitBreaker: { failure_rate: 0.5 } }, /unknown key `circuitBreaker.failure_rate`/],
    [{ circuitBreaker: { threshold: 0 } }, /threshold/],
    [{ failSafe: { softTimeout: -1 } }, /not a number of seconds/],
    [{ negative_ttl: 1 }, /unknown key `negative_ttl`/],
    [{ memory: { maxSize: 'big' } }, /invalid type/],
    [{ memory: { maxSize: -1 } }, /invalid value/],
    [{ memory: { maxSize: 1.5 } }, /invalid type/],
    [{ memory: { maxSize: 0 } }, /memory.max_bytes must be greater than 0/],
    [{ memory: { enabled: false }, sqlite: { enabled: false } }, /no tier/],
    [{ sqlite: { ttl: -1 } }, /not a number of seconds/],
    [{ sqlite: { coherence_interval: 1 } }, /unknown key `sqlite.coherence_interval`/],
    [{ sqlite: { coherenceInterval: -0.01 } }, /not a number of seconds/],
    [{ sqlite: { coherenceInterval: 3600.5 } }, /coherence_interval is longer than 1 hour/],
    [{ namespace: 7 }, /invalid type/],
    [{ namespace: '../etc' }, /namespace/],
    [{ memory: 5 }, /invalid type/],
  ];
  for (const [config, message] of cases) {
    const withPath = { ...config, sqlite: { path, ...config.sqlite } };
    if (config.sqlite?.enabled === false) delete withPath.sqlite.path;
    throwsWith(() => new HybridStorage(withPath), 'invalid_config', message);
  }
  for (const config of [5, 'x', [1], true]) {
    throwsWith(() => new HybridStorage(config), 'invalid_config', /config must be an object/);
  }
});

test('invalid_key: empty, too long, control characters, lone surrogates', async (t) => {
  const { storage } = open(t);
  await storage.set('good', 'kept');
  const bad = ['', 'k'.repeat(256), 'tab\there', 'new\nline', 'nul\u0000byte', 'next\u0085line', 'lone\ud800', '\udc00x'];
  for (const key of bad) {
    await rejectsWith(storage.get(key), 'invalid_key');
    await rejectsWith(storage.set(key, 1), 'invalid_key');
    await rejectsWith(storage.has(key), 'invalid_key');
    await rejectsWith(storage.delete(key), 'invalid_key');
    await rejectsWith(storage.lookup(key), 'invalid_key');
    await rejectsWith(storage.getBuffer(key), 'invalid_key');
    await rejectsWith(storage.getMetadata(key), 'invalid_key');
    await rejectsWith(storage.getOrLoad(key, () => 1), 'invalid_key');
    await rejectsWith(storage.mget(['good', key]), 'invalid_key');
    await rejectsWith(storage.mset(new Map([['fine', 1], [key, 2]])), 'invalid_key');
  }
  await rejectsWith(storage.get('k'.repeat(300)), 'invalid_key', /300 bytes long/);
  await rejectsWith(storage.get('lone\ud800'), 'invalid_key', /lone surrogate/);
  // A paired surrogate is a character like any other, and U+FFFD too.
  await storage.set('emoji 😀 \ufffd', 1);
  assert.equal(await storage.get('emoji 😀 \ufffd'), 1);
  await storage.set('k'.repeat(255), 'the limit');
  assert.equal(await storage.get('fine'), undefined);
  assert.deepEqual(await storage.keys(), ['emoji 😀 \ufffd', 'good', 'k'.repeat(255)]);
});

test('invalid_argument: wrong JS types and unusable numbers', async (t) => {
  const { storage } = open(t);
  for (const key of [5, null, undefined, {}, ['k'], Symbol('k'), 10n]) {
    await rejectsWith(storage.get(key), 'invalid_argument', /key must be a string/);
    await rejectsWith(storage.set(key, 1), 'invalid_argument', /key must be a string/);
    await rejectsWith(storage.delete(key), 'invalid_argument', /key must be a string/);
  }
  await rejectsWith(storage.get(), 'invalid_argument', /got undefined/);
  for (const loader of [undefined, 5, 'f', {}, null]) {
    await rejectsWith(storage.getOrLoad('k', loader), 'invalid_argument', /loader must be a function/);
  }
  for (const ttl of ['60', true, [60], () => 1]) {
    await rejectsWith(storage.set('k', 1, ttl), 'invalid_argument', /ttlSeconds must be/);
  }
  await rejectsWith(storage.set('k', 1, NaN), 'invalid_argument', /ttl NaN is not a number/);
  await rejectsWith(storage.set('k', 1, Infinity), 'invalid_argument', /not a finite number/);
  await rejectsWith(storage.set('k', 1, 1e12), 'invalid_argument', /100 years/);
  await rejectsWith(storage.set('k', 1, { ttl: 'soon' }), 'invalid_argument', /ttl must be a number/);
  await rejectsWith(storage.set('k', 1, { tags: 'ui' }), 'invalid_argument', /tags must be an array/);
  await rejectsWith(storage.set('k', 1, { tags: [5] }), 'invalid_argument', /a tag must be a string/);
  await rejectsWith(storage.set('k', 1, { tags: [''] }), 'invalid_argument', /tag/);
  await rejectsWith(storage.mget('k'), 'invalid_argument', /keys must be an array/);
  await rejectsWith(storage.mget([1]), 'invalid_argument', /key must be a string/);
  for (const entries of [[['a', 1]], 'a', 5, null, Buffer.from('x')]) {
    await rejectsWith(storage.mset(entries), 'invalid_argument', /entries must be a Map or a plain object/);
  }
  await rejectsWith(storage.mset(new Map([[1, 'one']])), 'invalid_argument', /key must be a string/);
  await rejectsWith(storage.keys(5), 'invalid_argument', /pattern must be a string/);
  await rejectsWith(storage.keys('a\u0001'), 'invalid_argument', /control character/);
  await rejectsWith(storage.invalidateTag(5), 'invalid_argument', /tag must be a string/);
  // A value larger than the L2 budget.
  const small = open(t, { sqlite: { maxSize: 1024 } }).storage;
  await rejectsWith(small.set('big', 'x'.repeat(4096)), 'invalid_argument');
  assert.equal(await storage.get('k'), undefined);
  assert.equal(await small.get('big'), undefined);
});

test('invalid_argument: a value no enabled tier can hold, and the refused write changes nothing', async (t) => {
  const { storage } = open(t, { memory: { maxSize: 65536 }, sqlite: { enabled: false } });
  await storage.set('k', 'old');
  const big = 'x'.repeat(100_000); // 100,002 bytes of JSON
  await rejectsWith(
    storage.set('k', big),
    'invalid_argument',
    /^value for "k" needs 100099 bytes in L1, over the \d+ bytes one L1 entry may take \(memory.max_bytes is 65536, split over \d+ shards\); sqlite is disabled, so no tier can hold it$/,
  );
  await rejectsWith(storage.mset(new Map([['small', 1], ['k', big]])), 'invalid_argument', /^value for "k" needs/);
  assert.equal(await storage.get('k'), 'old');
  assert.equal(await storage.get('small'), undefined);
  assert.deepEqual(await storage.keys(), ['k']);
});

test('what a getter of the mset object throws rejects the promise unchanged, storing nothing', async (t) => {
  const { storage } = open(t);
  await storage.set('a', 'old');
  class Thrown extends Error {}
  const thrown = new Thrown('the getter failed');
  const entries = {
    a: 'new',
    get b() {
      throw thrown;
    },
  };
  await assert.rejects(storage.mset(entries), (err) => {
    assert.equal(err, thrown);
    return true;
  });
  // Any value may be thrown, and is handed back as it is.
  for (const value of ['a string', 42, null, undefined, { plain: true }]) {
    const promise = storage.mset({ a: 'new', get b() { throw value; } });
    assert.ok(promise instanceof Promise);
    await assert.rejects(promise, (err) => {
      assert.equal(err, value);
      return true;
    });
  }
  // A Map whose iteration throws, a proxy whose keys throw, options whose getter throws.
  const broken = new Map([['a', 'new']]);
  broken[Symbol.iterator] = () => {
    throw thrown;
  };
  const trap = new Proxy({}, {
    ownKeys() {
      throw thrown;
    },
  });
  for (const promise of [
    storage.mset(broken),
    storage.mset(trap),
    storage.mset({ a: 'new' }, { get ttl() { throw thrown; } }),
    storage.set('a', 'new', { get tags() { throw thrown; } }),
  ]) {
    await assert.rejects(promise, (err) => {
      assert.equal(err, thrown);
      return true;
    });
  }
  assert.equal(await storage.get('a'), 'old');
  assert.equal(await storage.get('b'), undefined);
  assert.deepEqual(await storage.keys(), ['a']);
});

test('a huge key gives a short message', async (t) => {
  const { storage } = open(t);
  const key = 'k'.repeat(1 << 20);
  const calls = [
    () => storage.set(key, 1),
    () => storage.mset({ fine: 1, [key]: 2 }),
    () => storage.mset(new Map([['fine', 1], [key, 2]])),
    () => storage.get(key),
    () => storage.delete(key),
  ];
  for (const call of calls) {
    await assert.rejects(call(), (err) => {
      assert.equal(err.code, 'invalid_key');
      assert.ok(err.message.length < 400, `${err.message.length} characters: ${err.message.slice(0, 200)}`);
      return true;
    });
  }
  await rejectsWith(storage.set(key, 1), 'invalid_key', /^key "k{64}…" \(1048576 bytes\): /);
  assert.equal(await storage.get('fine'), undefined);
});

test('invalid_argument: a read method called on another object throws', () => {
  for (const method of ['get', 'getBuffer', 'lookup', 'lookupBuffer', 'has', 'getOrLoad', 'getOrLoadBuffer']) {
    throwsWith(() => HybridStorage.prototype[method].call({}, 'k', () => 1), 'invalid_argument', /another object/);
  }
});

test('invalid_value: bytes that are not JSON, values JSON cannot encode', async (t) => {
  const { storage } = open(t);
  await storage.set('binary', Buffer.from([0xff, 0xfe, 0x00]));
  await storage.set('text', Buffer.from('plain text, not JSON'));
  await rejectsWith(storage.get('binary'), 'invalid_value', /not UTF-8 JSON; read it with getBuffer/);
  await rejectsWith(storage.get('text'), 'invalid_value', /not JSON/);
  await rejectsWith(storage.lookup('text'), 'invalid_value');
  await rejectsWith(storage.mget(['text']), 'invalid_value');
  assert.deepEqual([...(await storage.getBuffer('binary'))], [0xff, 0xfe, 0x00]);
  const circular = {};
  circular.self = circular;
  const cases = [
    [undefined, /type undefined cannot be encoded/],
    [() => 1, /type function cannot be encoded/],
    [Symbol('s'), /type symbol cannot be encoded/],
    [10n, /BigInt/],
    [circular, /circular/],
  ];
  for (const [value, message] of cases) {
    await rejectsWith(storage.set('k', value), 'invalid_value', message);
    await rejectsWith(storage.mset({ fine: 1, k: value }), 'invalid_value', message);
  }
  assert.equal(await storage.get('k'), undefined);
  assert.equal(await storage.get('fine'), undefined);
});

test('closed: every method after dispose', async (t) => {
  const { storage } = open(t);
  await storage.set('k', 'v');
  await storage.dispose();
  const calls = {
    get: () => storage.get('k'),
    getBuffer: () => storage.getBuffer('k'),
    lookup: () => storage.lookup('k'),
    set: () => storage.set('k', 'w'),
    has: () => storage.has('k'),
    delete: () => storage.delete('k'),
    clear: () => storage.clear(),
    mget: () => storage.mget(['k']),
    mset: () => storage.mset({ k: 1 }),
    getMetadata: () => storage.getMetadata('k'),
    keys: () => storage.keys(),
    size: () => storage.size(),
    getOrLoad: () => storage.getOrLoad('k', () => 1),
    invalidateTag: () => storage.invalidateTag('t'),
    flush: () => storage.flush(),
  };
  for (const [name, call] of Object.entries(calls)) {
    await rejectsWith(call(), 'closed', /disposed/).catch((e) => {
      throw new Error(`${name}: ${e.message}`);
    });
  }
  throwsWith(() => storage.getStats(), 'closed');
  throwsWith(() => storage.getCircuitBreakerStatus(), 'closed');
  assert.equal(storage.isDisposed(), true);
  await storage.dispose();
});

test('a call made right after dispose() rejects with closed, before the close finishes', async (t) => {
  const { storage, path } = open(t);
  await storage.set('k', 'v');
  const disposed = storage.dispose();
  await rejectsWith(storage.get('k'), 'closed');
  await rejectsWith(storage.set('k', 'w'), 'closed');
  await disposed;
  const other = new HybridStorage({ sqlite: { path } });
  t.after(() => other.dispose());
  assert.equal(await other.get('k'), 'v');
});

test('io: the directory of the file cannot be created', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'file'), 'x');
  throwsWith(() => new HybridStorage({ sqlite: { path: join(dir, 'file', 'c.db') } }), 'io');
});

test('io: the path is a directory, with the reason', (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'sub'));
  throwsWith(() => new HybridStorage({ sqlite: { path: join(dir, 'sub') } }), 'io', /Is a directory/);
});

test('corrupt: the file is not a database, with the cause chained', (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'junk.db');
  writeFileSync(path, 'this is not a database at all '.repeat(100));
  throwsWith(() => new HybridStorage({ sqlite: { path } }), 'corrupt', /not a database/);
  try {
    new HybridStorage({ sqlite: { path } });
  } catch (err) {
    assert.ok(err.cause instanceof Error);
    assert.match(err.cause.message, /not a database/);
  }
});

test('incompatible: a newer schema version is refused and the file left untouched', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'newer.db');
  const made = new HybridStorage({ sqlite: { path } });
  await made.set('k', 'v');
  await made.dispose();
  rmSync(`${path}-wal`, { force: true });
  rmSync(`${path}-shm`, { force: true });
  // The SQLite header: user_version at byte 60, application_id at byte 68 (big-endian).
  const fd = openSync(path, 'r+');
  const header = Buffer.alloc(100);
  readSync(fd, header, 0, 100, 0);
  assert.equal(header.readUInt32BE(68), 0x5453544b, 'a tierstack file');
  header.writeUInt32BE(99, 60);
  writeSync(fd, header, 60, 4, 60);
  closeSync(fd);
  throwsWith(() => new HybridStorage({ sqlite: { path } }), 'incompatible', /schema version 99/);
});

test('a damaged cache file is set aside, rebuilt and counted in getStats', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'c.db');
  const first = new HybridStorage({ sqlite: { path } });
  await first.mset(new Map(Array.from({ length: 2000 }, (_, i) => [`k${String(i).padStart(5, '0')}`, 'v'.repeat(1500)])));
  await first.dispose();
  // Eight whole pages in the middle of the closed file overwritten.
  const damaged = readFileSync(path);
  const middle = Math.floor(damaged.length / 2 / 4096) * 4096;
  damaged.fill(0xa5, middle, middle + 8 * 4096);
  writeFileSync(path, damaged);

  const storage = new HybridStorage({ sqlite: { path } });
  t.after(() => storage.dispose());
  assert.deepEqual(await storage.keys(), []);
  const stats = storage.getStats();
  assert.deepEqual([stats.sqliteRebuilds, stats.sqliteReopens], [1, 0]);
  await storage.set('k', { v: 1 });
  assert.deepEqual(await storage.get('k'), { v: 1 });
  const aside = readdirSync(dir).filter((name) => /^c\.db\.corrupt-\d+$/.test(name));
  assert.equal(aside.length, 1);
  assert.ok(readFileSync(join(dir, aside[0])).equals(damaged));
});

test('sqlite.onCorrupt takes rebuild or fail', async (t) => {
  const dir = tempDir(t);
  for (const onCorrupt of ['rebuild', 'fail']) {
    await new HybridStorage({ sqlite: { path: join(dir, `${onCorrupt}.db`), onCorrupt } }).dispose();
  }
  throwsWith(
    () => new HybridStorage({ sqlite: { path: join(dir, 'x.db'), onCorrupt: 'repair' } }),
    'invalid_config',
    /expected `rebuild` or `fail`/,
  );
});
