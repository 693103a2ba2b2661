// Write strategies and the write-behind outbox, with a writable source over
// HTTP: the loopback origin's store (`<api>/store/<key>`, PUT with the value
// as the body and DELETE, each with an `Idempotency-Key`), whose delivery log
// (`GET /_origin/deliveries`) tells exactly what reached it. The functions of
// a source that throw or reject are tested with in-process sources.
import assert from 'node:assert/strict';
import { pbkdf2 } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';

import { HybridStorage } from 'tierstack';

import { rejectsWith, tempDir, throwsWith } from './helpers.mjs';
import { control, urls, useOrigin } from './origin.mjs';

useOrigin();

/** Short retries, so that a write dies in milliseconds. */
const QUICK = { retryBase: 0.01, retryMax: 0.05, maxAttempts: 3 };

const storeUrl = (key) => `${urls.api}/store/${encodeURIComponent(key)}`;

/**
 * The origin's store as a source: `load` GETs, `store` PUTs the value's
 * bytes (a Buffer as it is, anything else as its JSON), `remove` DELETEs.
 */
const httpSource = {
  load: async (key) => {
    const response = await fetch(storeUrl(key));
    if (response.status === 404) return undefined;
    if (!response.ok) throw new Error(`GET ${key}: HTTP ${response.status}`);
    return JSON.parse(await response.text());
  },
  store: async (key, value, idempotencyKey) => {
    const body = Buffer.isBuffer(value) ? value : JSON.stringify(value);
    const response = await fetch(storeUrl(key), {
      method: 'PUT',
      headers: { 'idempotency-key': idempotencyKey },
      body,
    });
    if (response.status !== 204) throw new Error(`PUT ${key}: HTTP ${response.status}`);
  },
  remove: async (key, idempotencyKey) => {
    const response = await fetch(storeUrl(key), {
      method: 'DELETE',
      headers: { 'idempotency-key': idempotencyKey },
    });
    if (response.status !== 204) throw new Error(`DELETE ${key}: HTTP ${response.status}`);
  },
};

/** The origin's delivery log: `{count, attempts, duplicates, deliveries}`. */
async function deliveries() {
  const response = await fetch(`${urls.api}/_origin/deliveries`);
  assert.equal(response.status, 200);
  return response.json();
}

/** What the origin's store holds under `key` (its text), or `null`. */
async function stored(key) {
  const response = await fetch(storeUrl(key));
  if (response.status === 404) return null;
  assert.equal(response.status, 200);
  return response.text();
}

/** A storage on a fresh file with `config` and `source`, disposed at the end. */
function open(t, config, source = httpSource) {
  const path = join(tempDir(t), 'cache.db');
  const storage = new HybridStorage({ ...config, sqlite: { path } }, { source });
  t.after(() => storage.dispose());
  return { storage, path };
}

/** Waits until `outboxStats()` satisfies `done` (at most 10 s). */
async function outboxUntil(storage, done) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const stats = storage.outboxStats();
    if (done(stats)) return stats;
    assert.ok(Date.now() < deadline, `the outbox did not get there: ${JSON.stringify(stats)}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('write-behind: sets and a delete reach the source once each, with the values written', async (t) => {
  const { storage } = open(t, { strategy: 'write-behind' });
  await storage.set('user:1', { name: 'Ada', langs: ['en', 'fr'] });
  await storage.set('user:2', [1, 2, 3]);
  await storage.set('motto', 'ünïcode');
  await storage.set('blob', Buffer.from([0xff, 0x00, 0x7f]));
  // Answered from memory, whether or not the source has it yet.
  const found = await storage.lookup('user:1');
  assert.deepEqual([found.value, found.tier], [{ name: 'Ada', langs: ['en', 'fr'] }, 'memory']);
  await storage.flush();
  await storage.delete('user:2');
  await storage.flush();

  const log = await deliveries();
  assert.deepEqual({ count: log.count, attempts: log.attempts, duplicates: log.duplicates }, {
    count: 5,
    attempts: 5,
    duplicates: 0,
  });
  // The four sets were delivered together (in any order), the delete after them.
  const sets = log.deliveries.slice(0, 4).sort((a, b) => a.key.localeCompare(b.key));
  assert.deepEqual(
    sets.map((d) => [d.key, d.value, d.value_base64]),
    [
      ['blob', null, Buffer.from([0xff, 0x00, 0x7f]).toString('base64')],
      ['motto', '"ünïcode"', Buffer.from('"ünïcode"').toString('base64')],
      ['user:1', '{"name":"Ada","langs":["en","fr"]}', Buffer.from('{"name":"Ada","langs":["en","fr"]}').toString('base64')],
      ['user:2', '[1,2,3]', Buffer.from('[1,2,3]').toString('base64')],
    ],
  );
  assert.deepEqual(
    [log.deliveries[4].key, log.deliveries[4].value, log.deliveries[4].value_base64],
    ['user:2', null, null],
  );
  const ids = log.deliveries.map((d) => d.idempotency_key);
  assert.equal(new Set(ids).size, 5, `one idempotency key per write: ${ids}`);
  assert.equal(await stored('user:1'), '{"name":"Ada","langs":["en","fr"]}');
  assert.equal(await stored('user:2'), null);

  const expected = { durable: true, pending: 0, oldestAge: null, retrying: 0, retries: 0, delivered: 5, dead: 0 };
  assert.deepEqual(storage.outboxStats(), expected);
  assert.deepEqual(storage.getStats().outbox, expected);
  assert.deepEqual(await storage.deadLetters(), []);
});

test('write-through: a failing source rejects the set with code source, and the old value stays', async (t) => {
  const { storage } = open(t, { strategy: 'write-through' });
  await storage.set('k', 'v1');
  assert.equal(await stored('k'), '"v1"');

  await control('fail_writes', { count: 1, status: 500 });
  await rejectsWith(storage.set('k', 'v2'), 'source', /^PUT k: HTTP 500$/);
  assert.equal(await storage.get('k'), 'v1');
  assert.deepEqual(await storage.lookup('k').then((l) => [l.value, l.tier]), ['v1', 'memory']);
  assert.equal(await stored('k'), '"v1"');
  // The fault was one write: the next goes through.
  await storage.set('k', 'v2');
  assert.equal(await storage.get('k'), 'v2');

  let log = await deliveries();
  assert.deepEqual({ count: log.count, attempts: log.attempts, duplicates: log.duplicates }, {
    count: 2,
    attempts: 3,
    duplicates: 0,
  });
  assert.deepEqual(log.deliveries.map((d) => [d.key, d.value]), [['k', '"v1"'], ['k', '"v2"']]);

  // A refused delete leaves the value too.
  await control('fail_writes', { count: 1, status: 503 });
  await rejectsWith(storage.delete('k'), 'source', /^DELETE k: HTTP 503$/);
  assert.equal(await storage.get('k'), 'v2');
  assert.equal(await storage.delete('k'), true);
  assert.equal(await storage.get('k'), undefined);
  assert.equal(await stored('k'), null);
  log = await deliveries();
  assert.deepEqual({ count: log.count, attempts: log.attempts }, { count: 3, attempts: 5 });

  // No outbox for write-through.
  assert.equal(storage.outboxStats(), null);
  assert.equal(storage.getStats().outbox, null);
});

test('write-through: the rejection carries what the source threw as its cause', async (t) => {
  const refusal = new Error('the store is read-only today');
  const source = {
    load: async () => undefined,
    store: async () => {
      throw refusal;
    },
    remove: async () => {},
  };
  const { storage } = open(t, { strategy: 'write-through' }, source);
  const err = await storage.set('k', 1).catch((e) => e);
  assert.equal(err.code, 'source');
  assert.equal(err.message, 'the store is read-only today');
  assert.equal(err.cause, refusal);
  assert.equal(await storage.has('k'), false);
});

test('write-behind: a source failing N times then recovering gets each write once', async (t) => {
  const { storage } = open(t, { strategy: 'write-behind', outbox: QUICK });
  await control('fail_writes', { count: 2, status: 503 });
  await storage.set('a', 1);
  await storage.set('b', 2);
  await storage.set('c', 3);
  await storage.flush();

  const log = await deliveries();
  assert.deepEqual({ count: log.count, attempts: log.attempts, duplicates: log.duplicates }, {
    count: 3,
    attempts: 5,
    duplicates: 0,
  });
  assert.deepEqual(log.deliveries.map((d) => [d.key, d.value]).sort(), [['a', '1'], ['b', '2'], ['c', '3']]);
  assert.deepEqual(storage.outboxStats(), {
    durable: true, pending: 0, oldestAge: null, retrying: 0, retries: 2, delivered: 3, dead: 0,
  });
});

test('write-behind: a source that always fails ends in dead letters, which are retried and purged', async (t) => {
  const { storage } = open(t, { strategy: 'write-behind', outbox: QUICK });
  await control('fail_writes', { status: 500 });
  const before = Date.now();
  await storage.set('a', 'one');
  await storage.set('b', 'two');
  await outboxUntil(storage, (s) => s.dead === 2);

  const dead = await storage.deadLetters();
  assert.deepEqual(
    dead.map(({ key, op, attempts, lastError }) => ({ key, op, attempts, lastError })),
    [
      { key: 'a', op: 'store', attempts: 3, lastError: 'source: PUT a: HTTP 500' },
      { key: 'b', op: 'store', attempts: 3, lastError: 'source: PUT b: HTTP 500' },
    ],
  );
  for (const letter of dead) {
    assert.ok(letter.createdAt instanceof Date && letter.failedAt instanceof Date);
    assert.ok(before - 1000 <= letter.createdAt.getTime(), `${letter.createdAt.toISOString()}`);
    assert.ok(letter.createdAt.getTime() <= letter.failedAt.getTime());
    assert.ok(letter.failedAt.getTime() <= Date.now());
  }
  assert.deepEqual(storage.outboxStats(), {
    durable: true, pending: 0, oldestAge: null, retrying: 0, retries: 6, delivered: 0, dead: 2,
  });
  let log = await deliveries();
  assert.deepEqual({ count: log.count, attempts: log.attempts }, { count: 0, attempts: 6 });
  // Dead letters are not waited for.
  await storage.flush();

  await control('clear_write_faults');
  assert.equal(await storage.retryDeadLetters(), 2);
  await storage.flush();
  log = await deliveries();
  assert.deepEqual({ count: log.count, attempts: log.attempts, duplicates: log.duplicates }, {
    count: 2,
    attempts: 8,
    duplicates: 0,
  });
  assert.deepEqual(log.deliveries.map((d) => [d.key, d.value]).sort(), [['a', '"one"'], ['b', '"two"']]);
  assert.deepEqual(await storage.deadLetters(), []);
  assert.deepEqual(storage.outboxStats(), {
    durable: true, pending: 0, oldestAge: null, retrying: 0, retries: 6, delivered: 2, dead: 0,
  });
  assert.equal(await storage.retryDeadLetters(), 0);

  // A remove that dies, purged.
  await control('fail_writes', { status: 500 });
  assert.equal(await storage.delete('a'), true);
  await outboxUntil(storage, (s) => s.dead === 1);
  assert.deepEqual(
    (await storage.deadLetters()).map(({ key, op, attempts, lastError }) => ({ key, op, attempts, lastError })),
    [{ key: 'a', op: 'remove', attempts: 3, lastError: 'source: DELETE a: HTTP 500' }],
  );
  assert.equal(await storage.purgeDeadLetters(), 1);
  assert.deepEqual(await storage.deadLetters(), []);
  assert.equal(storage.outboxStats().dead, 0);
  assert.equal(await storage.purgeDeadLetters(), 0);
  // The source still holds what the purged remove would have removed.
  assert.equal(await stored('a'), '"one"');
});

test('write-behind: what a storage could not deliver before dispose is delivered by the next one', async (t) => {
  const config = { strategy: 'write-behind', outbox: { retryBase: 0.01, retryMax: 0.02, maxAttempts: 1000, closeTimeout: 0.1 } };
  const { storage, path } = open(t, config);
  await control('fail_writes', { status: 500 });
  await storage.set('k', 'kept');
  await storage.dispose();
  assert.equal((await deliveries()).count, 0);

  await control('clear_write_faults');
  const next = new HybridStorage({ ...config, sqlite: { path } }, { source: httpSource });
  t.after(() => next.dispose());
  await next.flush();
  const log = await deliveries();
  assert.deepEqual(log.deliveries.map((d) => [d.key, d.value]), [['k', '"kept"']]);
  assert.equal(log.duplicates, 0);
  assert.deepEqual(next.outboxStats(), {
    durable: true, pending: 0, oldestAge: null, retrying: 0, retries: 0, delivered: 1, dead: 0,
  });
});

test('write-behind and write-through refuse a read-only source, or none, at open', (t) => {
  const path = join(tempDir(t), 'cache.db');
  for (const strategy of ['write-behind', 'write-through']) {
    const config = { strategy, sqlite: { path } };
    throwsWith(
      () => new HybridStorage(config, { source: httpSource.load }),
      'invalid_config',
      new RegExp(`strategy ${strategy} writes to the source, but the source \\(js\\) is read-only`),
    );
    throwsWith(
      () => new HybridStorage(config, { source: { load: httpSource.load } }),
      'invalid_config',
      /\(js\) is read-only/,
    );
    throwsWith(() => new HybridStorage(config), 'invalid_config', /no source is configured/);
    throwsWith(
      () => new HybridStorage({ ...config, github: { apiUrl: 'http://127.0.0.1:9' } }),
      'invalid_config',
      /\(github\) is read-only/,
    );
  }
  throwsWith(() => new HybridStorage({ strategy: 'write-around', sqlite: { path } }), 'invalid_config');
  throwsWith(() => new HybridStorage({ outbox: { max_attempts: 3 }, sqlite: { path } }), 'invalid_config', /outbox\.max_attempts/);
  throwsWith(() => new HybridStorage({ outbox: { maxAttempts: 0 }, sqlite: { path } }), 'invalid_config', /max_attempts/);
});

test('a writable source is {load, store, remove}: anything else is refused', (t) => {
  const path = join(tempDir(t), 'cache.db');
  const config = { strategy: 'write-behind', sqlite: { path } };
  const { load, store, remove } = httpSource;
  throwsWith(() => new HybridStorage(config, { source: { load, store } }), 'invalid_argument', /source\.store is given without source\.remove/);
  throwsWith(() => new HybridStorage(config, { source: { load, remove } }), 'invalid_argument', /source\.remove is given without source\.store/);
  throwsWith(() => new HybridStorage(config, { source: { load, store: 'PUT', remove } }), 'invalid_argument', /source store function must be a function, got string/);
  throwsWith(() => new HybridStorage(config, { source: { store, remove } }), 'invalid_argument', /source load function must be a function, got undefined/);
  throwsWith(() => new HybridStorage(config, { source: { load, store, remove, put: store } }), 'invalid_argument', /unknown source key `put`, expected one of: load, store, remove/);
});

test('store is handed the value as get decodes it, and one idempotency key per write across its attempts', async (t) => {
  const calls = [];
  const source = {
    load: async () => undefined,
    store: async (key, value, idempotencyKey) => {
      calls.push([key, value, idempotencyKey]);
      if (calls.filter((c) => c[0] === key).length === 1) throw new Error('first attempt refused');
    },
    remove: async (key, idempotencyKey) => {
      calls.push([key, null, idempotencyKey]);
    },
  };
  const { storage } = open(t, { strategy: 'write-behind', outbox: QUICK }, source);
  await storage.set('object', { a: [1, { b: null }] });
  await storage.set('bytes', Buffer.from([0xc3, 0x28]));
  await storage.set('json-bytes', new Uint8Array(Buffer.from('[1,2]')));
  await storage.flush();
  await storage.delete('object');
  await storage.flush();

  const byKey = (key) => calls.filter((c) => c[0] === key);
  assert.deepEqual(byKey('object').map((c) => c[1]), [{ a: [1, { b: null }] }, { a: [1, { b: null }] }, null]);
  assert.deepEqual(byKey('bytes').map((c) => c[1]), [Buffer.from([0xc3, 0x28]), Buffer.from([0xc3, 0x28])]);
  assert.ok(Buffer.isBuffer(byKey('bytes')[0][1]));
  assert.deepEqual(byKey('json-bytes').map((c) => c[1]), [[1, 2], [1, 2]]);
  for (const key of ['object', 'bytes', 'json-bytes']) {
    const [first, retry] = byKey(key);
    assert.equal(typeof first[2], 'string');
    assert.ok(first[2].length > 0);
    assert.equal(retry[2], first[2], `${key}: a retry carries the write's idempotency key`);
  }
  assert.notEqual(byKey('object')[2][2], byKey('object')[0][2], 'the delete is another write');
  assert.equal(storage.outboxStats().retries, 3);
});

test('write-behind: a store that throws, one that rejects and a remove that throws a non-Error become dead letters with their messages', async (t) => {
  const attempts = { sync: 0, async: 0, remove: 0 };
  const source = {
    load: async () => undefined,
    store: (key) => {
      attempts[key] += 1;
      if (key === 'sync') throw new Error('thrown at once');
      return Promise.reject(new TypeError('rejected later'));
    },
    remove: () => {
      attempts.remove += 1;
      throw 'a plain string'; // eslint-disable-line no-throw-literal
    },
  };
  const { storage } = open(t, { strategy: 'write-behind', outbox: QUICK }, source);
  await storage.set('sync', 1);
  await storage.set('async', 2);
  await storage.delete('gone');
  await outboxUntil(storage, (s) => s.dead === 3);
  const dead = await storage.deadLetters();
  assert.deepEqual(
    dead.map(({ key, op, attempts: n, lastError }) => ({ key, op, attempts: n, lastError })),
    [
      { key: 'sync', op: 'store', attempts: 3, lastError: 'source: thrown at once' },
      { key: 'async', op: 'store', attempts: 3, lastError: 'source: rejected later' },
      { key: 'gone', op: 'remove', attempts: 3, lastError: 'source: a plain string' },
    ],
  );
  assert.deepEqual(attempts, { sync: 3, async: 3, remove: 3 });
  // The tiers kept the writes: the source's failures are the outbox's.
  assert.equal(await storage.get('sync'), 1);
  assert.equal(await storage.get('async'), 2);
});

test('cache-aside: reads never call the source, and writes do not reach it', async (t) => {
  await fetch(storeUrl('k'), { method: 'PUT', headers: { 'idempotency-key': 'seed' }, body: '"at the source"' });
  let loads = 0;
  const counting = { ...httpSource, load: (key) => ((loads += 1), httpSource.load(key)) };
  const { storage } = open(t, { strategy: 'cache-aside' }, counting);
  assert.equal(await storage.get('k'), undefined);
  assert.equal(await storage.lookup('k'), undefined);
  assert.deepEqual(await storage.mget(['k']), new Map());
  await storage.set('k', 'mine');
  await storage.delete('k');
  await storage.set('k', 'mine again');
  assert.equal(await storage.get('k'), 'mine again');
  assert.equal(loads, 0);
  // The caller loads, with getOrLoad.
  assert.equal(await storage.getOrLoad('j', httpSource.load), undefined);
  assert.equal((await deliveries()).count, 1);
  assert.equal(await stored('k'), '"at the source"');
  assert.equal(storage.outboxStats(), null);
});

test('write-through: many concurrent sets whose store uses the libuv pool all complete', async (t) => {
  // libuv's pool has 4 threads: were each waiting set to hold one while its
  // store waits for the pool (pbkdf2 runs there), none would finish before
  // failSafe.hardTimeout.
  const hash = promisify(pbkdf2);
  const stored = new Map();
  const source = {
    load: async () => undefined,
    store: async (key, value) => {
      await hash(key, 'salt', 1000, 32, 'sha256');
      stored.set(key, value);
    },
    remove: async () => {},
  };
  const { storage } = open(t, { strategy: 'write-through', failSafe: { hardTimeout: 5 } }, source);
  const keys = Array.from({ length: 16 }, (_, i) => `k${i}`);
  await Promise.all(keys.map((key, i) => storage.set(key, i)));
  assert.deepEqual([...stored.entries()].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true })), keys.map((k, i) => [k, i]));
  assert.deepEqual(await storage.mget(keys), new Map(keys.map((k, i) => [k, i])));
});
