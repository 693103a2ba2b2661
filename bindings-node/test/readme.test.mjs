// The README's Node example, run as written.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

test('the ```js example of README.md runs', (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Node\n'));
  const match = section.match(/```js\n([\s\S]*?)```/);
  assert.ok(match, 'the Node section has a ```js block');
  // Inside the package, so that `import ... from 'tierstack'` resolves to it.
  const file = fileURLToPath(new URL(`./.readme-example-${process.pid}.mjs`, import.meta.url));
  writeFileSync(file, match[1]);
  t.after(() => rmSync(file, { force: true }));
  const run = spawnSync(process.execPath, [file], { encoding: 'utf8' });
  assert.equal(run.status, 0, `the example failed:\n${run.stderr}`);
  assert.match(run.stdout, /\{ name: 'card' \}/);
});
