// bench/table.mjs runs to its end in --quick mode (every value it read was
// the stored one) and writes its rows in the report's JSON schema. No timing
// is checked: a debug addon's figures mean nothing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { tempDir } from './helpers.mjs';

const table = fileURLToPath(new URL('../bench/table.mjs', import.meta.url));
const ROW_FIELDS = ['lower_is_better', 'peer', 'peer_value', 'ratio', 'scenario', 'tierstack', 'unit'];

test('bench/table.mjs --quick --json writes every row of the report schema', (t) => {
  const out = join(tempDir(t), 'bench.json');
  const ran = spawnSync(process.execPath, [table, '--quick', '--json', out], { encoding: 'utf8', timeout: 300_000 });
  assert.equal(ran.status, 0, `the bench failed:\n${ran.stdout}\n${ran.stderr}`);
  const report = JSON.parse(readFileSync(out, 'utf8'));

  assert.deepEqual(Object.keys(report).sort(), ['host', 'peers', 'quick', 'rows']);
  assert.equal(report.host, 'node');
  assert.equal(report.quick, true);
  assert.deepEqual(Object.keys(report.peers).sort(), ['better-sqlite3', 'lru-cache']);
  for (const version of Object.values(report.peers)) assert.match(version, /^\d+\.\d+\.\d+/);

  assert.deepEqual(
    report.rows.map((row) => [row.scenario.split(', 1,000 × ')[0], row.peer]),
    [
      ['get, memory hit', 'lru-cache LRUCache'],
      ['get, memory hit', 'the replaced design (Map + metadata)'],
      ['mget of 100, memory hits', 'lru-cache LRUCache, 100 get into a Map'],
      ['mget of 100, memory hits', 'the replaced design (Map + metadata)'],
      ['get, file hit (memory tier off)', 'the replaced design over better-sqlite3'],
      ['set, both tiers', 'the replaced design over better-sqlite3'],
    ],
  );
  for (const row of report.rows) {
    assert.deepEqual(Object.keys(row).sort(), ROW_FIELDS);
    assert.match(row.scenario, /KB objects$/);
    assert.ok(row.unit === 'µs' || row.unit === 'ops/s', row.unit);
    assert.equal(row.lower_is_better, row.unit === 'µs');
    for (const field of ['tierstack', 'peer_value', 'ratio']) {
      const value = row[field];
      assert.ok(typeof value === 'number' && Number.isFinite(value) && value > 0, `${field} of ${JSON.stringify(row)}`);
    }
    const ratio = row.tierstack / row.peer_value;
    assert.ok(Math.abs(row.ratio - ratio) <= 1e-3 * ratio, `ratio of ${JSON.stringify(row)}`);
  }
});
