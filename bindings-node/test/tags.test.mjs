// Tags: given at write time, removed together by invalidateTag.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { open, reopen } from './helpers.mjs';

test('invalidateTag removes every entry with the tag, in every tier', async (t) => {
  const { storage, path } = open(t);
  await storage.set('button', { v: 1 }, { tags: ['ui', 'form'] });
  await storage.set('card', { v: 2 }, { ttl: 60, tags: ['ui'] });
  await storage.mset({ intro: 'docs', guide: 'docs' }, { tags: ['docs'] });
  await storage.set('plain', 'none');
  assert.equal(await storage.invalidateTag('ui'), 2);
  assert.equal(await storage.get('button'), undefined);
  assert.equal(await storage.get('card'), undefined);
  assert.deepEqual(await storage.keys(), ['guide', 'intro', 'plain']);
  assert.equal(await reopen(t, path).get('button'), undefined);
  assert.equal(await storage.invalidateTag('ui'), 0);
  assert.equal(await storage.invalidateTag('form'), 0);
  assert.equal(await storage.invalidateTag('docs'), 2);
  assert.deepEqual(await storage.keys(), ['plain']);
});

test('a rewrite without tags drops the old tags', async (t) => {
  const { storage } = open(t);
  await storage.set('k', 1, { tags: ['old'] });
  await storage.set('k', 2);
  assert.deepEqual((await storage.getMetadata('k')).tags, []);
  assert.equal(await storage.invalidateTag('old'), 0);
  assert.equal(await storage.get('k'), 2);
});
