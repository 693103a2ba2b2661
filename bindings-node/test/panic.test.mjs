// A panic in the binding never aborts Node: it becomes an Error with code
// 'internal' (thrown by a synchronous method, a rejection for a promise).
// The entry points that panic exist in debug builds only, which is what
// tests/run-node builds; a build without them fails here rather than
// skipping.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import test from 'node:test';

const native = createRequire(import.meta.url)('../index.js');

test('the panicking entry points are there (a debug build)', () => {
  for (const name of ['__panicSync', '__panicAsync', '__panicInWrite', '__panicInLoad']) {
    assert.equal(typeof native[name], 'function', `${name} is missing: build the addon in debug`);
  }
  assert.equal(typeof native.HybridStorage.prototype.__panicRead, 'function');
});

test('a sync method that panics throws an Error with code internal', () => {
  assert.throws(
    () => native.__panicSync(),
    (err) => {
      assert.ok(err instanceof Error);
      assert.equal(err.code, 'internal');
      assert.match(err.message, /__panicSync panicked: a panic for the test/);
      return true;
    },
  );
});

test('a promise-returning method that panics rejects with code internal', async () => {
  const promise = native.__panicAsync();
  assert.ok(promise instanceof Promise);
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof Error);
    assert.equal(err.code, 'internal');
    assert.match(err.message, /__panicAsync panicked: a panic for the test/);
    return true;
  });
});

test('a write whose work panics off the JS thread rejects with code internal', async () => {
  await assert.rejects(native.__panicInWrite(), (err) => {
    assert.equal(err.code, 'internal');
    assert.match(err.message, /a write panicked: a panic for the test/);
    return true;
  });
});

test('a read that the core finishes on its runtime and that panics there rejects with code internal', async () => {
  await assert.rejects(native.__panicInLoad(), (err) => {
    assert.equal(err.code, 'internal');
    assert.match(err.message, /a read panicked: a panic for the test/);
    return true;
  });
});

test('a directly dispatched read method that panics rejects with code internal', async (t) => {
  const storage = new native.HybridStorage({ sqlite: { enabled: false } });
  t.after(() => storage.dispose());
  const promise = storage.__panicRead('k');
  assert.ok(promise instanceof Promise);
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, 'internal');
    assert.match(err.message, /a read panicked: a panic for the test/);
    return true;
  });
  await storage.set('k', 1);
  assert.equal(await storage.get('k'), 1);
});

test('the process goes on after the panics', async () => {
  for (let i = 0; i < 3; i++) {
    assert.throws(() => native.__panicSync(), { code: 'internal' });
    await assert.rejects(native.__panicAsync(), { code: 'internal' });
  }
  const { HybridStorage } = native;
  const storage = new HybridStorage({ sqlite: { enabled: false } });
  await storage.set('k', { v: 1 });
  assert.deepEqual(await storage.get('k'), { v: 1 });
  await storage.dispose();
});
