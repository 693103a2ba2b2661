// The storage design tierstack replaces, rebuilt for measurement: the hand-made
// `HybridStorageProvider` of the MCP server, over a `MemoryStorageProvider` (a
// `Map` of objects with a second `Map` of per-entry metadata) and a SQL
// provider. The SQL provider there is PGLite (Postgres compiled to WASM); here
// it is better-sqlite3 on a file in WAL mode, a faster engine, so the file
// figures of this reference are lower than the design's own.
//
// What each operation does is what the design does:
//   - every public call is wrapped: a disposed check, two `Date.now()` calls
//     and the key checks (non-empty, ≤ 255, no control character);
//   - a memory hit updates the entry's metadata object (`accessedAt = new
//     Date()`, `accessCount++`), and the hybrid layer records the hit with its
//     response time in a list trimmed to the last 100 (`slice(-100)`);
//   - a file read is a SELECT of the JSON text, an expiry check, an UPDATE of
//     the access columns, and `JSON.parse`; a hit is promoted to memory;
//   - `mget` asks memory for every key one `await get` at a time, then the
//     file once for the keys memory does not hold;
//   - `set` writes memory (with its size: `JSON.stringify` of the value) and
//     the file (an upsert of the JSON text) side by side.

import Database from 'better-sqlite3';

const MAX_KEY = 255;
const CONTROL = /[\x00-\x1f\x7f]/;

function validateKey(key) {
  if (!key || typeof key !== 'string') throw new Error('Storage key must be a non-empty string');
  if (key.length > MAX_KEY) throw new Error('Storage key must not exceed 255 characters');
  if (CONTROL.test(key)) throw new Error('Storage key contains invalid control characters');
}

/** What every provider call goes through. */
class Provider {
  disposed = false;

  async wrap(operation, fn) {
    if (this.disposed) throw new Error('Storage provider has been disposed and cannot be used');
    const start = Date.now();
    const result = await fn();
    if (Date.now() - start > 100) console.warn(`Slow storage operation: ${operation}`);
    return result;
  }
}

/** L1: a `Map` of values with expiry, and a `Map` of metadata per key. */
export class MemoryProvider extends Provider {
  constructor({ maxSize = 50 * 1024 * 1024, ttl = 3600 } = {}) {
    super();
    this.maxSize = maxSize;
    this.ttl = ttl;
    this.entries = new Map();
    this.metadata = new Map();
    this.totalSize = 0;
  }

  async get(key) {
    return this.wrap('get', async () => {
      validateKey(key);
      const entry = this.entries.get(key);
      if (entry !== undefined && (entry.expires === 0 || Date.now() <= entry.expires)) {
        const meta = this.metadata.get(key);
        if (meta) {
          meta.accessedAt = new Date();
          meta.accessCount++;
        }
        return entry.value;
      }
      if (entry !== undefined) this.entries.delete(key);
      this.metadata.delete(key);
      return undefined;
    });
  }

  async set(key, value, ttl) {
    return this.wrap('set', async () => {
      validateKey(key);
      const size = Buffer.byteLength(JSON.stringify(value), 'utf8');
      const previous = this.metadata.get(key);
      if (this.totalSize - (previous?.size ?? 0) + size > this.maxSize) {
        throw new Error(`Storage limit exceeded. Cannot store key: ${key}`);
      }
      const seconds = ttl ?? this.ttl;
      this.entries.set(key, { value, expires: seconds > 0 ? Date.now() + seconds * 1000 : 0 });
      const now = new Date();
      if (previous) {
        this.totalSize += size - previous.size;
        previous.size = size;
        previous.updatedAt = now;
        previous.accessedAt = now;
      } else {
        this.totalSize += size;
        this.metadata.set(key, { size, createdAt: now, updatedAt: now, accessedAt: now, accessCount: 0 });
      }
    });
  }

  async mget(keys) {
    return this.wrap('mget', async () => {
      const found = new Map();
      for (const key of keys) {
        const value = await this.get(key);
        if (value !== undefined) found.set(key, value);
      }
      return found;
    });
  }
}

/** L2: JSON text in a SQL table, with access tracking per read. */
export class SqlProvider extends Provider {
  constructor(path, { ttl = 86400 } = {}) {
    super();
    this.ttl = ttl;
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS storage (
      key TEXT PRIMARY KEY,
      value TEXT NOT NULL,
      size INTEGER NOT NULL,
      created_at INTEGER NOT NULL,
      updated_at INTEGER NOT NULL,
      accessed_at INTEGER NOT NULL,
      access_count INTEGER NOT NULL DEFAULT 0,
      expires_at INTEGER
    )`);
    this.select = this.db.prepare('SELECT value, expires_at FROM storage WHERE key = ?');
    this.touch = this.db.prepare(
      'UPDATE storage SET accessed_at = ?, access_count = access_count + 1 WHERE key = ?',
    );
    this.remove = this.db.prepare('DELETE FROM storage WHERE key = ?');
    this.upsert = this.db.prepare(`INSERT INTO storage
        (key, value, size, created_at, updated_at, accessed_at, access_count, expires_at)
        VALUES (@key, @value, @size, @now, @now, @now, 0, @expires)
      ON CONFLICT (key) DO UPDATE SET value = excluded.value, size = excluded.size,
        updated_at = excluded.updated_at, accessed_at = excluded.accessed_at,
        access_count = storage.access_count + 1, expires_at = excluded.expires_at`);
  }

  #read(key, now) {
    const row = this.select.get(key);
    if (row === undefined) return undefined;
    if (row.expires_at !== null && now > row.expires_at) {
      this.remove.run(key);
      return undefined;
    }
    this.touch.run(now, key);
    return JSON.parse(row.value);
  }

  async get(key) {
    return this.wrap('get', async () => {
      validateKey(key);
      return this.#read(key, Date.now());
    });
  }

  async set(key, value, ttl) {
    return this.wrap('set', async () => {
      validateKey(key);
      const text = JSON.stringify(value);
      const now = Date.now();
      const seconds = ttl ?? this.ttl;
      this.upsert.run({
        key,
        value: text,
        size: Buffer.byteLength(text, 'utf8'),
        now,
        expires: seconds > 0 ? now + seconds * 1000 : null,
      });
    });
  }

  async mget(keys) {
    return this.wrap('mget', async () => {
      const found = new Map();
      const now = Date.now();
      this.db.transaction(() => {
        for (const key of keys) {
          const value = this.#read(key, now);
          if (value !== undefined) found.set(key, value);
        }
      })();
      return found;
    });
  }

  close() {
    this.db.close();
  }
}

/** The hybrid layer: L1 over L2, promotion, and the statistics it keeps. */
export class ReferenceHybridStorage extends Provider {
  constructor({ path, memory = { enabled: true } }) {
    super();
    this.memory = memory.enabled === false ? undefined : new MemoryProvider(memory);
    this.sql = new SqlProvider(path);
    this.stats = {
      hits: { memory: 0, pglite: 0, github: 0 },
      misses: 0,
      totalOperations: 0,
      responseTimes: { memory: [], pglite: [], github: [] },
    };
  }

  #recordHit(tier, ms) {
    this.stats.hits[tier]++;
    this.stats.totalOperations++;
    this.stats.responseTimes[tier].push(ms);
    if (this.stats.responseTimes[tier].length > 100) {
      this.stats.responseTimes[tier] = this.stats.responseTimes[tier].slice(-100);
    }
  }

  async get(key) {
    return this.wrap('get', async () => {
      validateKey(key);
      const start = Date.now();
      if (this.memory) {
        const value = await this.memory.get(key);
        if (value !== undefined) {
          this.#recordHit('memory', Date.now() - start);
          return value;
        }
      }
      const value = await this.sql.get(key);
      if (value !== undefined) {
        this.#recordHit('pglite', Date.now() - start);
        if (this.memory) await this.memory.set(key, value);
        return value;
      }
      this.stats.misses++;
      this.stats.totalOperations++;
      return undefined;
    });
  }

  async set(key, value, ttl) {
    return this.wrap('set', async () => {
      validateKey(key);
      const writes = [this.sql.set(key, value, ttl)];
      if (this.memory) writes.push(this.memory.set(key, value, ttl));
      await Promise.allSettled(writes);
    });
  }

  async mget(keys) {
    return this.wrap('mget', async () => {
      const found = this.memory ? await this.memory.mget(keys) : new Map();
      const missing = keys.filter((key) => !found.has(key));
      if (missing.length > 0) {
        for (const [key, value] of await this.sql.mget(missing)) {
          found.set(key, value);
          this.memory?.set(key, value);
        }
      }
      return found;
    });
  }

  async dispose() {
    this.disposed = true;
    this.sql.close();
  }
}
