// The CommonJS entry point, through the package's "exports" map.
const assert = require('node:assert/strict');
const { mkdtempSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { test } = require('node:test');

const tierstack = require('tierstack');

test('require("tierstack") gives HybridStorage, the same class as the ES module', async () => {
  assert.equal(typeof tierstack.HybridStorage, 'function');
  const esm = await import('tierstack');
  assert.equal(esm.HybridStorage, tierstack.HybridStorage);
});

test('a storage opened through the CommonJS entry works', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tierstack-cjs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const storage = new tierstack.HybridStorage({ sqlite: { path: join(dir, 'c.db') } });
  await storage.set('k', { from: 'cjs' });
  assert.deepEqual(await storage.get('k'), { from: 'cjs' });
  await storage.dispose();
});
