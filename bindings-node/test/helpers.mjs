// Shared set-up for the tests: a temporary directory per test, a storage on
// a real SQLite file in it, and assertions on error codes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { HybridStorage } from 'tierstack';

/** A fresh directory, removed when the test ends. */
export function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'tierstack-node-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A storage on `<tempdir>/cache.db` (unless `config.sqlite.enabled` is false),
 * disposed when the test ends. Returns the storage, the file and the directory.
 */
export function open(t, config = {}) {
  const dir = tempDir(t);
  const path = join(dir, 'cache.db');
  const sqlite = config.sqlite?.enabled === false ? config.sqlite : { path, ...config.sqlite };
  const storage = new HybridStorage({ ...config, sqlite });
  t.after(() => storage.dispose());
  return { storage, path, dir };
}

/** Another storage on the same file: a new process's view (empty L1). */
export function reopen(t, path, config = {}) {
  const storage = new HybridStorage({ ...config, sqlite: { path, ...config.sqlite } });
  t.after(() => storage.dispose());
  return storage;
}

/** Asserts that `promise` rejects with an `Error` whose `code` is `code`. */
export async function rejectsWith(promise, code, message) {
  assert.ok(promise instanceof Promise, 'the call returns a promise');
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof Error, `an Error, got ${err}`);
    assert.equal(err.code, code, `code of "${err.message}"`);
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** Asserts that `fn()` throws an `Error` whose `code` is `code`. */
export function throwsWith(fn, code, message) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof Error, `an Error, got ${err}`);
    assert.equal(err.code, code, `code of "${err.message}"`);
    if (message) assert.match(err.message, message);
    return true;
  });
}

export const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));
