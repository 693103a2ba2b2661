// Shared set-up for the tests: a temporary directory per test, a storage on
// a real SQLite file in it, and assertions on error codes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { HybridStorage } from 'tierstack';

/** The storages each test's helpers opened, disposed before its directories go. */
const opened = new WeakMap();

/**
 * A fresh directory, removed when the test ends, once the storages `open`
 * and `reopen` made are disposed: a storage still running could write its
 * journal into the directory while it is being removed.
 */
export function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'tierstack-node-'));
  if (!opened.has(t)) {
    opened.set(t, []);
  }
  const storages = opened.get(t);
  t.after(async () => {
    await Promise.all(storages.splice(0).map((storage) => storage.dispose()));
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  });
  return dir;
}

/** Disposes `storage` when the test ends, before its directory goes. */
function disposeAtEnd(t, storage) {
  if (opened.has(t)) {
    opened.get(t).push(storage);
  } else {
    t.after(() => storage.dispose());
  }
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
  disposeAtEnd(t, storage);
  return { storage, path, dir };
}

/** Another storage on the same file: a new process's view (empty L1). */
export function reopen(t, path, config = {}) {
  const storage = new HybridStorage({ ...config, sqlite: { path, ...config.sqlite } });
  disposeAtEnd(t, storage);
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
