// Many machines on one Redis: each "machine" is a process with its own
// memory tier and its own SQLite file (this test's process, and children
// running redis-machine.mjs driven over their stdin), sharing a real
// redis-server that the test starts on a free loopback port. The backplane
// keeps their memory tiers and files coherent; the Redis lease makes a
// missing key one origin request for all of them.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { HybridStorage } from 'tierstack';

import { control, fault, requests, urls, useOrigin } from './origin.mjs';
import { sleep, tempDir } from './helpers.mjs';

const MACHINE = fileURLToPath(new URL('./redis-machine.mjs', import.meta.url));
const NAMESPACE = 'machines';

/** The bound on a change reaching another machine's reads, which the
 * backplane documents for a connected reader on a quiet network. */
const BOUND_MS = 250;
const TRIALS = 500;

/** How long the origin takes to answer: long enough that every caller of
 * both machines asks while the first load is under way. */
const ORIGIN_DELAY_MS = 300;

useOrigin();

const deferred = new WeakMap();

/** Runs `fn` when the test ends, before what was deferred earlier (so the
 * storages and machines close before their Redis and proxy go). */
function defer(t, fn) {
  let stack = deferred.get(t);
  if (!stack) {
    stack = [];
    deferred.set(t, stack);
    t.after(async () => {
      while (stack.length) await stack.pop()();
    });
  }
  stack.push(fn);
}

/** A free loopback port (free when asked). */
async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** A redis-server of this test's own, without persistence: killed, it loses
 * everything. Killed when the test ends. */
class RedisServer {
  static async start(t, password) {
    const server = new RedisServer(await freePort(), tempDir(t), password);
    await server.run();
    defer(t, () => server.kill());
    return server;
  }

  constructor(port, dir, password) {
    this.port = port;
    this.dir = dir;
    this.password = password;
    this.child = null;
  }

  get url() {
    const auth = this.password ? `:${this.password}@` : '';
    return `redis://${auth}127.0.0.1:${this.port}/0`;
  }

  /** Starts it on its port; resolves once it accepts connections. */
  async run() {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir];
    if (this.password) args.push('--requirepass', this.password);
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'ignore'] });
    const exited = once(child, 'exit').then(([code]) => {
      throw new Error(`redis-server on port ${this.port} exited (${code}) before it was ready`);
    });
    const ready = new Promise((resolve) => {
      // Reading its log to the end keeps it from blocking on a full pipe.
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (line.includes('Ready to accept connections')) resolve();
      });
    });
    await Promise.race([ready, exited]);
    exited.catch(() => {});
    this.child = child;
  }

  async kill() {
    const child = this.child;
    this.child = null;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  }

  async restart() {
    await this.kill();
    await this.run();
  }
}

/** A loopback TCP proxy to `port`: `cut()` drops every connection through
 * it and refuses new ones until `restore()` (a machine's network going away
 * and coming back). Closed when the test ends. */
class Proxy {
  static async start(t, target) {
    const proxy = new Proxy(target);
    proxy.server.listen(0, '127.0.0.1');
    await once(proxy.server, 'listening');
    defer(t, () => {
      proxy.cut();
      proxy.server.close();
    });
    return proxy;
  }

  constructor(target) {
    this.open = true;
    this.sockets = new Set();
    this.server = createServer((client) => {
      if (!this.open) {
        client.destroy();
        return;
      }
      const server = connect(target, '127.0.0.1');
      for (const [from, to] of [[client, server], [server, client]]) {
        this.sockets.add(from);
        from.setNoDelay(true);
        from.pipe(to);
        from.on('error', () => to.destroy());
        from.on('close', () => {
          this.sockets.delete(from);
          to.destroy();
        });
      }
    });
  }

  get url() {
    return `redis://127.0.0.1:${this.server.address().port}/0`;
  }

  cut() {
    this.open = false;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  restore() {
    this.open = true;
  }
}

/** The config of a machine on `url`, with its own file in `dir`. */
function machineConfig(url, dir, name, redis = {}) {
  return {
    namespace: NAMESPACE,
    sqlite: { path: join(dir, `${name}.db`) },
    ttlJitter: 0,
    redis: { url, ...redis },
  };
}

/** A machine in a child process (redis-machine.mjs); quits when the test ends. */
class Machine {
  static async start(t, config) {
    const machine = new Machine(config);
    defer(t, () => machine.quit());
    assert.deepEqual(await machine.answer(), { ready: true });
    return machine;
  }

  constructor(config) {
    this.child = spawn(process.execPath, [MACHINE, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
    this.exited = once(this.child, 'exit');
  }

  /** The next answer line, parsed. */
  async answer() {
    const { value, done } = await this.lines.next();
    assert.ok(!done, 'the machine exited');
    return JSON.parse(value);
  }

  send(command) {
    this.child.stdin.write(`${JSON.stringify(command)}\n`);
  }

  async ask(command) {
    this.send(command);
    return this.answer();
  }

  /** `[value, tier]` of a lookup, or `null` on a miss. */
  async get(key) {
    const found = await this.ask({ op: 'get', key });
    return found.miss ? null : [found.value, found.tier];
  }

  async set(key, value) {
    assert.deepEqual(await this.ask({ op: 'set', key, value }), { ok: true });
  }

  /** Reads `key` until it is `value`; the tier of the read that saw it. */
  async poll(key, value) {
    const answer = await this.ask({ op: 'poll', key, value });
    assert.ok(answer.tier, `${key} never became ${value}: ${JSON.stringify(answer)}`);
    return answer.tier;
  }

  async read(keys) {
    return (await this.ask({ op: 'read', keys })).values;
  }

  async stats() {
    return (await this.ask({ op: 'stats' })).stats;
  }

  async backplane() {
    return (await this.stats()).redis.backplane;
  }

  async quit() {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin.end(`${JSON.stringify({ op: 'quit' })}\n`);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** This process as a machine: its own file, the same Redis. */
function here(t, dir, url, redis = {}) {
  const storage = new HybridStorage(machineConfig(url, dir, 'here', redis), {
    source: async (key) => `origin of ${key}`,
  });
  defer(t, () => storage.dispose());
  return storage;
}

const backplane = (storage) => storage.getStats().redis.backplane;

/** Waits (up to 20 s) until `done()` resolves to true. */
async function waitUntil(what, done) {
  const deadline = Date.now() + 20_000;
  while (!(await done())) {
    assert.ok(Date.now() < deadline, `never: ${what}`);
    await sleep(0.005);
  }
}

/** Waits until `machine` has heard of `received` changes, then checks that
 * it serves `key` as `value`, from memory after one read. (A read of Redis
 * that races the change's arrival answers without keeping the value.) */
async function settle(machine, key, value, received) {
  await waitUntil('the machine hears of every change', async () => (await machine.backplane()).received === received);
  assert.equal((await machine.get(key))?.[0], value);
  assert.deepEqual(await machine.get(key), [value, 'memory']);
}

const keys = (n) => Array.from({ length: n }, (_, i) => `k${i}`);

/** Writes each `[key, value]` through `storage`, a few at a time. */
async function writeAll(storage, entries) {
  for (let i = 0; i < entries.length; i += 50) {
    await Promise.all(entries.slice(i, i + 50).map(([key, value]) => storage.set(key, value)));
  }
}

test('the redis section: camelCase keys, unknown keys refused, the password never in an error', (t) => {
  const path = join(tempDir(t), 'config.db');
  const open = (redis) => new HybridStorage({ sqlite: { path }, redis });
  const url = 'redis://user:hunter2@127.0.0.1:1/0';
  for (const [redis, message] of [
    [{ url, backplane_max_len: 100 }, /unknown key `redis\.backplane_max_len`/],
    [{ url, tiemout: 1 }, /unknown key `redis\.tiemout`/],
    [{ url: 'http://user:hunter2@127.0.0.1:1' }, /redis\.url "http:\/\/user:\*\*\*@127\.0\.0\.1:1" must start with redis:\/\//],
    [{ url, timeout: 0 }, /redis\.timeout must be greater than 0/],
    [{ url, backplaneMaxLen: 99 }, /redis\.backplane_max_len must be between 100 and 100000000/],
    [{ prefix: 'p:' }, /missing field `url`/],
  ]) {
    assert.throws(() => open(redis), (err) => {
      assert.equal(err.code, 'invalid_config');
      assert.match(err.message, message);
      for (let e = err; e; e = e.cause) assert.ok(!String(e.message ?? e).includes('hunter2'), err.message);
      return true;
    });
  }
  // Off: as if absent.
  const off = new HybridStorage({ sqlite: { path }, redis: { url, enabled: false } });
  defer(t, () => off.dispose());
  const stats = off.getStats();
  assert.equal(stats.redis, null);
  assert.deepEqual(stats.tiers.map((x) => x.tier), ['memory', 'sqlite']);
  assert.equal(stats.tierAvailability.redis, false);
});

test('getStats with Redis: the redis tier, its breaker and the backplane, in camelCase; no password', async (t) => {
  const server = await RedisServer.start(t, 'hunter2');
  const storage = here(t, tempDir(t), server.url, { prefix: 'stats:', timeout: 0.5, ttl: 600, backplaneMaxLen: 1000 });
  await waitUntil('the backplane connects', () => backplane(storage).connected);
  await storage.set('k', 'v');
  const other = here(t, tempDir(t), server.url, { prefix: 'stats:' });
  // Its reader starts from a second before it opened: it hears of the set.
  await waitUntil('the set reaches the other storage', () => backplane(other).received === 1);
  assert.deepEqual(await other.lookup('k').then((l) => [l.value, l.tier]), ['v', 'redis']);
  assert.deepEqual(await other.lookup('k').then((l) => [l.value, l.tier]), ['v', 'memory']);
  const stats = other.getStats();
  assert.deepEqual(stats.hits, { memory: 1, sqlite: 0, redis: 1 });
  assert.equal(stats.hitRate, 100);
  assert.deepEqual(stats.tierAvailability, { memory: true, sqlite: true, redis: true, source: true });
  assert.deepEqual(stats.tiers.map((x) => [x.tier, x.hits, x.misses]), [['memory', 1, 1], ['sqlite', 0, 1], ['redis', 1, 0]]);
  assert.ok(stats.avgResponseTimes.redis > 0, 'the Redis read was timed');
  assert.equal(stats.avgResponseTimes.redis, stats.tiers[2].avgTimeUs / 1000);
  assert.equal(stats.source.coalescedMachines, 0);
  assert.deepEqual(Object.keys(stats.redis).sort(), ['backplane', 'breaker', 'errors', 'skipped']);
  assert.deepEqual([stats.redis.errors, stats.redis.skipped], [0, 0]);
  assert.deepEqual(stats.redis.breaker, {
    state: 'CLOSED', isOpen: false, failureCount: 0, isRequestAllowed: true, lastFailureTime: null,
    nextAttemptTime: null, trips: 0,
  });
  assert.deepEqual(Object.keys(stats.redis.backplane).sort(), [
    'connected', 'deferred', 'lagMs', 'maxLagMs', 'received', 'replayed', 'resyncs', 'sent',
  ]);
  assert.deepEqual({ ...backplane(other), lagMs: 0, maxLagMs: 0 }, {
    connected: true, sent: 0, received: 1, replayed: 0, resyncs: 0, deferred: 0, lagMs: 0, maxLagMs: 0,
  });
  assert.equal(backplane(storage).sent, 1);
  assert.ok(!JSON.stringify(stats).includes('hunter2'));

  // A wrong password: Redis refuses every call; the storage serves on
  // without it, and its figures do not show the password either.
  const refused = here(t, tempDir(t), server.url.replace('hunter2', 'wrong-hunter3'));
  await refused.set('k', 'mine');
  assert.deepEqual(await refused.lookup('k').then((l) => [l.value, l.tier]), ['mine', 'memory']);
  assert.ok(refused.getStats().redis.errors > 0);
  assert.ok(!JSON.stringify(refused.getStats()).includes('hunter3'));

  // Without the backplane: no backplane figures.
  const quiet = here(t, tempDir(t), server.url, { backplane: false });
  assert.equal(quiet.getStats().redis.backplane, null);
});

test('a set on one machine reaches the other machine\'s reads within the bound', async (t) => {
  const server = await RedisServer.start(t);
  const dir = tempDir(t);
  const a = here(t, dir, server.url);
  const b = await Machine.start(t, machineConfig(server.url, dir, 'b'));
  const key = 'component:card';
  await a.set(key, 'v0');
  await b.poll(key, 'v0');
  await settle(b, key, 'v0', 1);

  const lags = [];
  for (let i = 1; i <= TRIALS; i++) {
    const value = `v${i}`;
    await a.set(key, value);
    const start = performance.now();
    const tier = await b.poll(key, value);
    lags.push(performance.now() - start);
    // Dropped from B's memory and file by the backplane: read from Redis.
    assert.equal(tier, 'redis', `trial ${i}`);
  }
  lags.sort((x, y) => x - y);
  const worst = lags.at(-1);
  t.diagnostic(
    `a set on one machine, seen by the other's reads (node): median ${lags[lags.length >> 1].toFixed(2)} ms, ` +
      `p99 ${lags[Math.floor(lags.length * 0.99)].toFixed(2)} ms, worst ${worst.toFixed(2)} ms over ${TRIALS} trials`,
  );
  assert.ok(worst < BOUND_MS, `worst ${worst} ms over the bound ${BOUND_MS} ms`);
  // Once every change is in, B serves it from memory; no load.
  await settle(b, key, `v${TRIALS}`, TRIALS + 1);
  const stats = await b.stats();
  assert.equal(stats.redis.backplane.received, TRIALS + 1);
  assert.equal(stats.redis.backplane.resyncs, 0);
  assert.equal(stats.source.requests, 0);
  assert.equal(a.getStats().source.requests, 0);
  assert.equal(backplane(a).sent, TRIALS + 1);
});

test('Redis killed mid-run: both keep serving without an error, and recover when it returns', async (t) => {
  const server = await RedisServer.start(t);
  const dir = tempDir(t);
  const a = here(t, dir, server.url);
  const b = await Machine.start(t, machineConfig(server.url, dir, 'b'));
  await a.set('before', '1');
  await b.poll('before', '1');
  await settle(b, 'before', '1', 1);

  await server.kill();
  // Every call still answers, from memory, the file or the source; none fails.
  for (let i = 0; i < 50; i++) {
    await a.set(`during${i}`, '2');
    assert.deepEqual(await a.lookup(`during${i}`).then((l) => [l.value, l.tier]), ['2', 'memory']);
    assert.deepEqual(await b.get('before'), ['1', 'memory']);
    if (i % 10 === 0) assert.deepEqual(await b.get(`new${i}`), [`origin of new${i}`, 'source']);
  }
  assert.equal(await a.get('from-a'), 'origin of from-a');
  assert.equal(backplane(a).connected, false);
  assert.equal((await b.backplane()).connected, false);
  assert.ok(a.getStats().redis.errors > 0);

  await server.restart();
  // Both readers reconnect; Redis lost the stream, so each empties its
  // tiers once; A delivers what Redis missed of its writes.
  await waitUntil('both reconnect', async () => backplane(a).connected && (await b.backplane()).connected);
  await waitUntil('A delivers what Redis missed', () => backplane(a).deferred > 0);
  assert.equal(backplane(a).resyncs, 1);
  assert.equal((await b.backplane()).resyncs, 1);
  assert.equal(a.getStats().redis.breaker.state, 'CLOSED');
  assert.equal((await b.stats()).redis.breaker.state, 'CLOSED');
  // And Redis carries changes again.
  await a.set('after', '3');
  const start = performance.now();
  assert.equal(await b.poll('after', '3'), 'redis');
  const took = performance.now() - start;
  assert.ok(took < BOUND_MS, `${took} ms`);
  await b.set('from-b', '4');
  assert.deepEqual(await a.lookup('from-b').then((l) => [l.value, l.tier]), ['4', 'redis']);
});

test('a machine cut off replays the changes it missed', async (t) => {
  const server = await RedisServer.start(t);
  const dir = tempDir(t);
  const a = here(t, dir, server.url);
  const proxy = await Proxy.start(t, server.port);
  const b = await Machine.start(t, machineConfig(proxy.url, dir, 'b'));
  const names = keys(1000);
  await writeAll(a, names.map((key) => [key, 'old']));
  await waitUntil("B's reader has read the writes", async () => (await b.backplane()).received === 1000);
  // B holds every old value in its memory and its file.
  assert.ok((await b.read(names)).every((v) => v === 'old'));
  assert.deepEqual(await b.get('k7'), ['old', 'memory']);

  proxy.cut();
  await writeAll(a, names.map((key, i) => [key, `new${i}`]));
  // Cut off, B serves what it holds.
  assert.deepEqual(await b.get('k7'), ['old', 'memory']);
  proxy.restore();
  await waitUntil('B replays', async () => (await b.backplane()).replayed === 1000);
  const stats = await b.stats();
  assert.equal(stats.redis.backplane.resyncs, 0);
  assert.equal(stats.redis.backplane.received, 2000);
  assert.deepEqual(await b.read(names), names.map((_, i) => `new${i}`), 'B served an old value');
  assert.equal((await b.stats()).source.requests, 0);
});

test('a machine away past the trimmed stream empties its memory and its file', async (t) => {
  const server = await RedisServer.start(t);
  const dir = tempDir(t);
  const a = here(t, dir, server.url, { backplaneMaxLen: 100 });
  const proxy = await Proxy.start(t, server.port);
  const b = await Machine.start(t, machineConfig(proxy.url, dir, 'b', { backplaneMaxLen: 100 }));
  const names = keys(50);
  await writeAll(a, names.map((key) => [key, 'old']));
  await waitUntil("B's reader has read the writes", async () => (await b.backplane()).received === 50);
  assert.ok((await b.read(names)).every((v) => v === 'old'));
  assert.equal((await b.stats()).tiers[0].entries, 50);

  proxy.cut();
  // Far more changes than the stream keeps: it is trimmed past B's place.
  for (let round = 0; round < 20; round++) await writeAll(a, names.map((key) => [key, `new${round}`]));
  proxy.restore();
  await waitUntil('B resyncs', async () => (await b.backplane()).resyncs === 1);
  const stats = await b.stats();
  assert.deepEqual(
    stats.tiers.map((x) => [x.tier, x.entries]),
    [['memory', 0], ['sqlite', 0], ['redis', 0]],
    "B's memory and file were not emptied",
  );
  assert.deepEqual(await b.read(names), names.map(() => 'new19'));
  assert.equal((await b.stats()).source.requests, 0);
});

test('fifty callers on each of two machines make one origin request', async (t) => {
  const server = await RedisServer.start(t);
  const dir = tempDir(t);
  const a = await Machine.start(t, machineConfig(server.url, dir, 'a'));
  const b = await Machine.start(t, machineConfig(server.url, dir, 'b'));
  const url = `${urls.raw}/shadcn-ui/ui/main/apps/v4/registry/new-york-v4/ui/dialog.tsx`;
  const response = await fetch(url);
  assert.equal(response.status, 200);
  const expected = await response.text();
  await control('clear_log');
  await fault({ host: 'raw', delay_ms: ORIGIN_DELAY_MS });

  const command = { op: 'burst', key: 'component:dialog', n: 50, url };
  a.send(command);
  b.send(command);
  assert.deepEqual(await a.answer(), { values: [expected] });
  assert.deepEqual(await b.answer(), { values: [expected] });
  const log = await requests();
  assert.equal(log.length, 1, JSON.stringify(log));
  const [sa, sb] = [await a.stats(), await b.stats()];
  // One machine loaded; the other waited for its fill in Redis.
  assert.equal(sa.source.requests + sb.source.requests, 1);
  assert.equal(sa.source.coalescedMachines + sb.source.coalescedMachines, 1);
  assert.equal(sa.source.coalesced + sb.source.coalesced, 98);
});
