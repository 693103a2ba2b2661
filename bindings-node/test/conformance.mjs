// The Node conformance runner: runs the shared operation vectors on
// HybridStorage (see tests/conformance/README.md).
//
//   node bindings-node/test/conformance.mjs tests/conformance/vectors/*.json
//
// Prints `ok <file>: <name>` or `FAIL <file>: <name>: step <i>: <what>` per
// vector and `conformance: <passed> passed, <failed> failed` last; exits 0
// only when every vector passed. A vector whose step this machine does not
// allow (`make_read_only` mounts with mount(8): root only) prints
// `skip <file>: <name>: <why>` and counts neither way. Vector values are byte strings, so the
// runner uses the raw-bytes calls (`set(key, Buffer)`, `getBuffer`,
// `lookupBuffer`, `mgetBuffer`); `set_json` and `get_json` use the JSON calls.
// `advance` moves the process's test clock (`advanceTestClock`); vectors run
// one at a time, so no vector sees another's advance.
// Vector configs are in the JSON spelling (snake_case) and are handed over
// in Node's camelCase; a key the runner does not know is passed unchanged.
// A `writable` vector's source is `{load, store, remove}`; `store` is handed
// the value as `get` decodes it (parsed JSON, or a Buffer for bytes that are
// not JSON), which the runner records as the text of its bytes (the JSON
// text of a parsed value is the bytes it was parsed from: vector values are
// compact).
import { execFileSync } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

import { HybridStorage, Loaded, advanceTestClock } from '../index.mjs';

const CAMEL = {
  '': {
    fail_safe: 'failSafe',
    circuit_breaker: 'circuitBreaker',
    negative_ttl: 'negativeTtl',
    refresh_ahead: 'refreshAhead',
    ttl_jitter: 'ttlJitter',
    test_clock: 'testClock',
  },
  memory: { max_bytes: 'maxSize' },
  sqlite: { max_bytes: 'maxSize', coherence_interval: 'coherenceInterval', on_corrupt: 'onCorrupt' },
  fail_safe: { max_stale: 'maxStale', soft_timeout: 'softTimeout', hard_timeout: 'hardTimeout' },
  circuit_breaker: {
    failure_rate: 'failureRate',
    minimum_calls: 'minimumCalls',
    slow_call: 'slowCall',
    max_timeout: 'maxTimeout',
    half_open_probes: 'halfOpenProbes',
    success_threshold: 'successThreshold',
  },
  outbox: {
    max_attempts: 'maxAttempts',
    retry_base: 'retryBase',
    retry_max: 'retryMax',
    flush_timeout: 'flushTimeout',
    close_timeout: 'closeTimeout',
  },
};

/** `getCircuitBreakerStatus()` in the vectors' spelling. */
const BREAKER_STATES = { CLOSED: 'closed', OPEN: 'open', HALF_OPEN: 'half-open' };

/** A JSON-spelled config in Node's spelling. */
function camelCase(config) {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) return config;
  const out = {};
  for (const [key, value] of Object.entries(config)) {
    const section = CAMEL[key];
    const inner = section && value !== null && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value).map(([k, v]) => [section[k] ?? k, v]))
      : value;
    out[CAMEL[''][key] ?? key] = inner;
  }
  return out;
}

class StepFailed extends Error {}

const TTL_NAMES = { NaN: Number.NaN, inf: Number.POSITIVE_INFINITY, '-inf': Number.NEGATIVE_INFINITY };

/** A step's `ttl`: absent, a number, or one of the strings `"NaN"`, `"inf"`,
 * `"-inf"` for the values JSON cannot hold. */
function ttlOf(step) {
  if (typeof step.ttl !== 'string') return step.ttl;
  if (!Object.hasOwn(TTL_NAMES, step.ttl)) {
    throw new StepFailed(`ttl ${JSON.stringify(step.ttl)} is neither a number nor one of NaN, inf, -inf`);
  }
  return TTL_NAMES[step.ttl];
}

/** The vector needs what this machine does not allow. */
class Skipped extends Error {}

/** Runs mount(8) or umount(8); a failure skips the vector. */
function mount(command, args) {
  try {
    execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const why = err.stderr?.toString().trim() || err.message;
    throw new Skipped(`make_read_only: ${command} ${args.join(' ')} is not permitted here: ${why}`);
  }
}

const text = (buffer) => (buffer === undefined ? null : buffer.toString('utf8'));
const bytes = (value) => Buffer.from(value, 'utf8');
const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

/** The scripted loader of a vector: its answers in order, one per call. */
class Script {
  constructor(answers) {
    this.answers = answers ?? [];
    this.calls = 0;
    this.keys = null;
  }

  async answer() {
    const answer = this.answers[this.calls];
    this.calls += 1;
    if (answer === undefined) throw new Error('script exhausted');
    if (answer.delay) await sleep(answer.delay);
    if (answer.error !== undefined) throw new Error(answer.error);
    return answer;
  }

  /** The loader of one key (and the read-through source). */
  load = async () => {
    const answer = await this.answer();
    if (answer.not_found) return undefined;
    if (answer.ttl === undefined && answer.tags === undefined) return bytes(answer.value);
    return new Loaded(bytes(answer.value), { ttl: answer.ttl, tags: answer.tags });
  };

  /** The batch loader: records the keys it is handed. */
  loadMany = async (keys) => {
    this.keys = [...keys].sort();
    const answer = await this.answer();
    return new Map(Object.entries(answer.values ?? {}).map(([k, v]) => [k, bytes(v)]));
  };
}

/**
 * The writable side of a vector's source: records each write as
 * `[key, value or null]`; the first `fail` calls fail with `store refused`.
 */
class Writes {
  constructor(fail) {
    this.fail = fail ?? 0;
    this.calls = 0;
    this.recorded = [];
  }

  write(key, value) {
    this.calls += 1;
    if (this.calls <= this.fail) throw new Error('store refused');
    this.recorded.push([key, value]);
  }

  store = async (key, value) => {
    this.write(key, Buffer.isBuffer(value) ? text(value) : JSON.stringify(value));
  };

  remove = async (key) => {
    this.write(key, null);
  };
}

/** The outbox's figures in the vectors' spelling (`null` without an outbox). */
const OUTBOX_FIELDS = ['durable', 'pending', 'retrying', 'retries', 'delivered', 'dead'];

const BREAKER_FIELDS = {
  state: (s) => BREAKER_STATES[s.state],
  failure_count: (s) => s.failureCount,
  allows_request: (s) => s.isRequestAllowed,
  trips: (s) => s.trips,
};

class Runner {
  constructor(dir, vector) {
    this.dir = dir;
    this.vectorConfig = vector.config ?? {};
    this.config = this.vectorConfig;
    this.script = new Script(vector.script);
    this.readThrough = vector.read_through === true;
    this.writes = vector.writable === true ? new Writes(vector.store_fail) : null;
    this.storage = null;
    this.mounted = false;
  }

  open(config) {
    const withPath = camelCase(structuredClone(config));
    if (withPath.sqlite === undefined) withPath.sqlite = {};
    if (typeof withPath.sqlite === 'object' && withPath.sqlite !== null && withPath.sqlite.enabled !== false) {
      withPath.sqlite.path ??= join(this.dir, 'cache.db');
    }
    let options;
    if (this.writes !== null) {
      options = { source: { load: this.script.load, store: this.writes.store, remove: this.writes.remove } };
    } else if (this.readThrough) {
      options = { source: this.script.load };
    }
    this.storage = new HybridStorage(withPath, options);
    this.config = config;
  }

  async step(step) {
    const { op } = step;
    if (op === 'open') return this.open(step.config ?? this.vectorConfig);
    if (op === 'sleep') return sleep(step.seconds);
    if (op === 'advance') return advanceTestClock(step.seconds);
    if (op === 'make_read_only') {
      // A read-only bind mount of the directory onto itself.
      mount('mount', ['--bind', this.dir, this.dir]);
      this.mounted = true;
      return mount('mount', ['-o', 'remount,bind,ro', this.dir]);
    }
    const storage = this.storage;
    if (storage === null) throw new StepFailed('no storage is open');
    switch (op) {
      case 'reopen':
        await storage.dispose();
        return this.open(this.config);
      case 'close':
        return storage.dispose();
      case 'set': {
        const ttl = ttlOf(step);
        return storage.set(step.key, bytes(step.value), step.tags === undefined ? ttl : { ttl, tags: step.tags });
      }
      case 'get':
        return text(await storage.getBuffer(step.key));
      case 'lookup': {
        const found = await storage.lookupBuffer(step.key);
        if (found === undefined) return null;
        const result = { value: text(found.value), tier: found.tier };
        // `stale` is compared where a vector expects a stale copy.
        if (found.stale) result.stale = true;
        return result;
      }
      case 'has':
        return storage.has(step.key);
      case 'delete':
        return storage.delete(step.key);
      case 'mget': {
        const found = await storage.mgetBuffer(step.keys);
        return Object.fromEntries([...found].map(([key, value]) => [key, text(value)]));
      }
      case 'mset':
        return storage.mset(new Map(Object.entries(step.entries).map(([k, v]) => [k, bytes(v)])), ttlOf(step));
      case 'keys':
        return storage.keys(step.pattern);
      case 'len':
        return storage.size();
      case 'clear':
        return storage.clear();
      case 'set_json':
        return storage.set(step.key, step.json);
      case 'get_json':
        return (await storage.get(step.key)) ?? null;
      case 'get_or_load':
        return text(await storage.getOrLoadBuffer(step.key, this.script.load, ttlOf(step)));
      case 'get_or_load_many': {
        this.script.keys = null;
        const found = await storage.getOrLoadManyBuffer(step.keys, this.script.loadMany, ttlOf(step));
        if ('loader_keys' in step && !isDeepStrictEqual(this.script.keys, step.loader_keys)) {
          throw new StepFailed(
            `the loader was handed ${JSON.stringify(this.script.keys)}, expected ${JSON.stringify(step.loader_keys)}`,
          );
        }
        return Object.fromEntries([...found].map(([key, value]) => [key, text(value)]));
      }
      case 'loader_calls':
        return this.script.calls;
      case 'concurrent': {
        const inner = step.step;
        const outcomes = await Promise.allSettled(Array.from({ length: step.times }, () => this.step(inner)));
        for (const [i, outcome] of outcomes.entries()) {
          if (outcome.status === 'rejected') {
            const err = outcome.reason;
            if (err instanceof StepFailed) throw err;
            if (inner.error === undefined || err?.code !== inner.error) {
              throw new StepFailed(`call ${i}: ${inner.op} raised ${err?.code ?? err?.name}: ${err?.message ?? err}`);
            }
          } else if (inner.error !== undefined) {
            throw new StepFailed(`call ${i}: ${inner.op} succeeded, expected ${inner.error}`);
          } else if ('expect' in inner && !isDeepStrictEqual(outcome.value ?? null, inner.expect)) {
            throw new StepFailed(
              `call ${i}: ${inner.op} gave ${JSON.stringify(outcome.value)}, expected ${JSON.stringify(inner.expect)}`,
            );
          }
        }
        return undefined;
      }
      case 'breaker': {
        const status = storage.getCircuitBreakerStatus();
        return Object.fromEntries(Object.keys(step.expect ?? {}).map((k) => [k, BREAKER_FIELDS[k]?.(status)]));
      }
      case 'invalidate_tag':
        return storage.invalidateTag(step.tag);
      case 'flush':
        return storage.flush();
      case 'source_writes':
        if (this.writes === null) throw new StepFailed('source_writes in a vector that is not writable');
        return structuredClone(this.writes.recorded);
      case 'outbox': {
        const stats = storage.outboxStats();
        const fields = Object.keys(step.expect ?? {}).filter((k) => OUTBOX_FIELDS.includes(k));
        return Object.fromEntries(fields.map((k) => [k, stats === null ? null : stats[k]]));
      }
      case 'dead_letters':
        return (await storage.deadLetters()).map(({ key, op, attempts }) => ({ key, op, attempts }));
      case 'retry_dead_letters':
        return storage.retryDeadLetters();
      case 'purge_dead_letters':
        return storage.purgeDeadLetters();
      case 'breaker_open':
        return storage.openCircuitBreaker();
      case 'breaker_close':
        return storage.closeCircuitBreaker();
      default:
        throw new StepFailed(`unknown op ${JSON.stringify(op)}`);
    }
  }

  async close() {
    try {
      if (this.storage !== null) await this.storage.dispose();
    } finally {
      if (this.mounted) execFileSync('umount', ['-l', this.dir]);
    }
  }
}

/** `null` if the vector passed, else what went wrong. */
async function runVector(vector) {
  const dir = mkdtempSync(join(tmpdir(), 'tierstack-conformance-'));
  const runner = new Runner(dir, vector);
  try {
    runner.open(runner.config);
    for (const [i, step] of vector.steps.entries()) {
      let result;
      try {
        result = await runner.step(step);
      } catch (err) {
        if (err instanceof Skipped) throw err;
        if (err instanceof StepFailed) return `step ${i}: ${err.message}`;
        if (step.error === undefined || err?.code !== step.error) {
          return `step ${i}: ${step.op} raised ${err?.code ?? err?.name}: ${err?.message ?? err}`;
        }
        continue;
      }
      if (step.error !== undefined) return `step ${i}: ${step.op} succeeded, expected ${step.error}`;
      if ('expect' in step && !isDeepStrictEqual(result ?? null, step.expect)) {
        return `step ${i}: ${step.op} gave ${JSON.stringify(result)}, expected ${JSON.stringify(step.expect)}`;
      }
    }
    return null;
  } catch (err) {
    if (err instanceof Skipped) throw err;
    return `setup: ${err?.code ?? err?.name}: ${err?.message ?? err}`;
  } finally {
    await runner.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

let passed = 0;
let failed = 0;
for (const path of process.argv.slice(2)) {
  const name = basename(path);
  for (const vector of JSON.parse(readFileSync(path, 'utf8')).vectors) {
    let problem;
    try {
      problem = await runVector(vector);
    } catch (err) {
      if (!(err instanceof Skipped)) throw err;
      console.log(`skip ${name}: ${vector.name}: ${err.message}`);
      continue;
    }
    if (problem === null) {
      passed += 1;
      console.log(`ok ${name}: ${vector.name}`);
    } else {
      failed += 1;
      console.log(`FAIL ${name}: ${vector.name}: ${problem}`);
    }
  }
}
console.log(`conformance: ${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 && passed > 0 ? 0 : 1;
