// Where a `set` runs: on the JS thread when nothing would make it wait (the
// process's journal takes it, no source to write, no Redis), so it is done
// when `set` returns; on a pool thread otherwise (a value too large for the
// journal, committed to the file, may wait for another process's write
// lock), so the event loop never waits for another process. Either way a
// storage's writes are done in the order they were made.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';

import { open, reopen } from './helpers.mjs';

test('a set is done before it returns when nothing makes it wait', async (t) => {
  const { storage, path } = open(t);
  for (let i = 0; i < 50; i++) {
    const written = storage.set(`component:${i}`, { name: `c${i}` });
    // Read before the promise is awaited: the write is already there, in
    // L1 and in the process's journal (which other processes wait for).
    assert.deepEqual(await storage.get(`component:${i}`), { name: `c${i}` });
    assert.equal(await written, undefined);
  }
  const other = reopen(t, path);
  assert.deepEqual(await other.get('component:49'), { name: 'c49' });
});

test('a set that must wait for another process leaves the event loop free', async (t) => {
  const { storage, path } = open(t);
  await storage.set('button', { v: 1 });
  // A child process takes the file's write lock and holds it until told.
  const holder = spawn(
    process.execPath,
    [
      '-e',
      `const Database = require('better-sqlite3');
       const db = new Database(process.argv[1]);
       db.exec('BEGIN IMMEDIATE');
       process.stdout.write('locked\\n');
       process.stdin.once('data', () => { db.exec('ROLLBACK'); db.close(); process.exit(0); });`,
      path,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  t.after(() => holder.kill());
  await once(holder.stdout, 'data');
  // A set that the journal takes is done at once, the lock held or not.
  await storage.set('small', { v: 1 });
  // Over 4 MiB, a value is committed to the file directly: this one waits.
  const large = 'x'.repeat(5 << 20);
  let done = false;
  const written = storage.set('button', { v: 2, large }).then(() => {
    done = true;
  });
  // The loop turns while the set waits: timers fire, reads are served.
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(done, false);
  assert.deepEqual(await storage.get('button'), { v: 1 });
  holder.stdin.write('go\n');
  await written;
  assert.equal(done, true);
  assert.deepEqual(await storage.get('button'), { v: 2, large });
  const other = reopen(t, path);
  assert.deepEqual(await other.get('button'), { v: 2, large });
  assert.deepEqual(await other.get('small'), { v: 1 });
});

test('a set does not overtake a write made before it that is still on a thread', async (t) => {
  const { storage } = open(t);
  for (let i = 0; i < 20; i++) {
    await storage.set('button', { v: i });
    // The delete goes to a thread; the set made after it must not be done
    // first, here, and then be removed by it.
    const deleted = storage.delete('button');
    const written = storage.set('button', { v: i + 1 });
    await Promise.all([deleted, written]);
    assert.deepEqual(await storage.get('button'), { v: i + 1 }, `round ${i}`);
  }
});
