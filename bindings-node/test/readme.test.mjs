// The README's Node examples, run as written.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/** The ```js blocks of the README's Node section (up to the next `## `). */
function examples() {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('\n## Node\n');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end === -1 ? undefined : end);
  return [...section.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** Runs an example; its stdout. */
function run(t, code, name) {
  // Inside the package, so that `import ... from 'tierstack'` resolves to it.
  const file = fileURLToPath(new URL(`./.readme-${name}-${process.pid}.mjs`, import.meta.url));
  writeFileSync(file, code);
  t.after(() => rmSync(file, { force: true }));
  const ran = spawnSync(process.execPath, [file], { encoding: 'utf8' });
  assert.equal(ran.status, 0, `the example failed:\n${ran.stderr}`);
  return ran.stdout;
}

test('the ```js example of README.md runs', (t) => {
  const [example] = examples();
  assert.ok(example, 'the Node section has a ```js block');
  assert.match(run(t, example, 'example'), /\{ name: 'card' \}/);
});

test('the Loading example of README.md runs', (t) => {
  const blocks = examples();
  assert.equal(blocks.length, 3, 'the Node section has the storage, Loading and Writing examples');
  assert.equal(run(t, blocks[1], 'loading').trim(), '# docs:button 6');
});

test('the Writing to the source example of README.md runs', (t) => {
  const blocks = examples();
  assert.equal(blocks.length, 3, 'the Node section has the storage, Loading and Writing examples');
  assert.equal(run(t, blocks[2], 'writing').trim(), '2 3');
});
