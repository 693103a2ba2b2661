// The example MCP server (examples/mcp-server), end to end: the built server
// is spawned over stdio and driven with the MCP SDK's `Client`, reading
// through a GitHub-shaped origin on loopback (`tierstack-origin`, from env
// TIERSTACK_ORIGIN_BIN). Every scenario asserts the origin's request count
// exactly. tests/run-node installs and builds the example first.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { sleep, tempDir } from './helpers.mjs';
import { BASE, BLOCKS, COMPONENTS, count, fault, nowS, requests, urls, useOrigin } from './origin.mjs';

const EXAMPLE = fileURLToPath(new URL('../examples/mcp-server/', import.meta.url));
const SERVER = join(EXAMPLE, 'dist', 'index.js');

// The SDK is the example's dependency: its client is loaded from the
// example's node_modules, through the package's export map.
const sdk = await (async () => {
  const root = join(EXAMPLE, 'node_modules', '@modelcontextprotocol', 'sdk');
  const { exports } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const load = (subpath) => {
    const target = exports[subpath]?.import ?? exports['./*'].import.replace('*', subpath.slice(2));
    return import(pathToFileURL(join(root, target)).href);
  };
  return { ...(await load('./client')), ...(await load('./client/stdio.js')) };
})();

const STALE_LINE = /^\(stale: served from the cache, \d+ s old; GitHub is unavailable\)$/;

useOrigin();

// ---- the server ----------------------------------------------------------------------

/**
 * Spawns the example server on the cache file `db` (env `TIERSTACK_TTL` =
 * `ttl` when given) and connects a client to it; the session is closed
 * (the server exits) when the test ends, or by `close()`.
 */
async function startServer(t, db, { ttl } = {}) {
  const env = {
    TIERSTACK_DB_PATH: db,
    GITHUB_API_URL: urls.api,
    GITHUB_RAW_URL: urls.raw,
    ...(ttl === undefined ? {} : { TIERSTACK_TTL: String(ttl) }),
  };
  const transport = new sdk.StdioClientTransport({ command: process.execPath, args: [SERVER], env, stderr: 'inherit' });
  const client = new sdk.Client({ name: 'tierstack-test', version: '0.0.0' });
  await client.connect(transport);
  let closed;
  const close = () => (closed ??= client.close());
  t.after(close);
  return { client, close };
}

/** Calls `tool`; asserts it succeeded, and returns its texts and structured content. */
async function call(client, tool, args = {}) {
  const result = await client.callTool({ name: tool, arguments: args });
  assert.notEqual(result.isError, true, `${tool}: ${result.content?.[0]?.text}`);
  return { texts: result.content.map((c) => c.text), ...result.structuredContent };
}

/** Calls `tool`; asserts it answered a tool error, and returns the message. */
async function callFails(client, tool, args = {}) {
  const result = await client.callTool({ name: tool, arguments: args });
  assert.equal(result.isError, true, `${tool} ${JSON.stringify(args)} succeeded: ${result.content?.[0]?.text}`);
  assert.equal(result.content.length, 1);
  return result.content[0].text;
}

const firstLine = (text) => text.split('\n')[0];
const dbIn = (t) => join(tempDir(t), 'cache.db');

// ---- scenarios -------------------------------------------------------------------------

test('the server lists its six tools', async (t) => {
  const { client } = await startServer(t, dbIn(t));
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((tool) => tool.name).sort(), [
    'get_block', 'get_cache_stats', 'get_component', 'get_component_demo', 'list_blocks', 'list_components',
  ]);
  assert.equal(await count(), 0);
});

test('get_component: GitHub once, then memory, then the file after a restart', async (t) => {
  const db = dbIn(t);
  const first = await startServer(t, db);
  const fetched = await call(first.client, 'get_component', { name: 'button' });
  assert.equal(firstLine(fetched.texts[0]), `// ${BASE}/ui/button.tsx`);
  assert.equal(fetched.texts[1], '(fresh: fetched from GitHub just now)');
  assert.deepEqual(
    { key: fetched.key, tier: fetched.tier, stale: fetched.stale },
    { key: 'component:react:button', tier: 'source', stale: false },
  );
  const log = await requests();
  assert.equal(log.length, 1);
  assert.deepEqual(
    { host: log[0].host, path: log[0].path, status: log[0].status },
    { host: 'raw', path: `/shadcn-ui/ui/main/${BASE}/ui/button.tsx`, status: 200 },
  );

  const again = await call(first.client, 'get_component', { name: 'button', framework: 'react' });
  assert.equal(again.texts[0], fetched.texts[0]);
  assert.equal(again.tier, 'memory');
  assert.equal(again.stale, false);
  assert.match(again.texts[1], /^\(fresh: served from memory, \d+ s old\)$/);
  assert.equal(await count(), 1);
  await first.close();

  // A new server process on the same file: served from it, no request.
  const second = await startServer(t, db);
  const restarted = await call(second.client, 'get_component', { name: 'button' });
  assert.equal(restarted.texts[0], fetched.texts[0]);
  assert.equal(restarted.tier, 'sqlite');
  assert.equal(restarted.stale, false);
  assert.match(restarted.texts[1], /^\(fresh: served from the cache file, \d+ s old\)$/);
  assert.equal(await count(), 1);
});

test('demos, blocks and the listings: 46 components, 5 blocks', async (t) => {
  const { client } = await startServer(t, dbIn(t));
  const components = await call(client, 'list_components');
  assert.deepEqual(components.names, COMPONENTS);
  assert.equal(components.texts[0], `46 components:\n${COMPONENTS.join('\n')}`);
  const blocks = await call(client, 'list_blocks', {});
  assert.deepEqual(blocks.names, BLOCKS);
  const demo = await call(client, 'get_component_demo', { name: 'dialog' });
  assert.equal(firstLine(demo.texts[0]), `// ${BASE}/examples/dialog-demo.tsx`);
  assert.equal(demo.key, 'component-demo:react:dialog');
  const block = await call(client, 'get_block', { name: 'login-01' });
  assert.equal(firstLine(block.texts[0]), `// ${BASE}/blocks/login-01.tsx`);
  assert.equal(block.key, 'block:react:login-01');

  const log = await requests();
  assert.deepEqual(
    log.map((r) => `${r.host} ${r.path}`),
    [
      `api /repos/shadcn-ui/ui/contents/${BASE}/ui`,
      `api /repos/shadcn-ui/ui/contents/${BASE}/blocks`,
      `raw /shadcn-ui/ui/main/${BASE}/examples/dialog-demo.tsx`,
      `raw /shadcn-ui/ui/main/${BASE}/blocks/login-01.tsx`,
    ],
  );
  // Served from memory from now on.
  assert.equal((await call(client, 'list_components')).tier, 'memory');
  assert.equal(await count(), 4);
});

test('not found, another framework and invalid names are tool errors', async (t) => {
  const { client } = await startServer(t, dbIn(t));
  assert.equal(
    await callFails(client, 'get_component', { name: 'no-such-thing' }),
    'Not found: component "no-such-thing" (react) does not exist on GitHub.',
  );
  // Remembered: no second request.
  await callFails(client, 'get_component', { name: 'no-such-thing' });
  assert.equal(await count(), 1);
  assert.equal((await requests())[0].status, 404);

  // Only react is routed: a miss with no request.
  assert.equal(
    await callFails(client, 'get_component', { name: 'button', framework: 'vue' }),
    'Not found: component "button" (vue) does not exist on GitHub.',
  );
  for (const name of ['../../etc/passwd', 'a/b', '%2e%2e']) {
    assert.match(await callFails(client, 'get_block', { name }), /^Invalid name for block ".*" \(react\): /);
  }
  assert.equal(await count(), 1);
});

test('two server processes started at once make one request for the same component', async (t) => {
  const db = dbIn(t);
  const [a, b] = await Promise.all([startServer(t, db), startServer(t, db)]);
  // A slow answer, so that both ask while the first fetch is under way.
  await fault({ delay_ms: 300, times: 1 });
  const [fromA, fromB] = await Promise.all([
    call(a.client, 'get_component', { name: 'card' }),
    call(b.client, 'get_component', { name: 'card' }),
  ]);
  assert.equal(firstLine(fromA.texts[0]), `// ${BASE}/ui/card.tsx`);
  assert.equal(fromB.texts[0], fromA.texts[0]);
  assert.deepEqual([fromA.tier, fromB.tier].sort(), ['source', 'sqlite']);
  assert.equal(await count(), 1);
});

test('a server error after the copy expired serves the stale copy, marked stale', async (t) => {
  const { client } = await startServer(t, dbIn(t), { ttl: 1 });
  const fresh = await call(client, 'get_component', { name: 'button' });
  await sleep(1.1); // the copy expires (TIERSTACK_TTL=1)
  await fault({ status: 500, times: 1 });
  const stale = await call(client, 'get_component', { name: 'button' });
  assert.equal(stale.texts[0], fresh.texts[0]);
  assert.equal(stale.stale, true);
  assert.ok(stale.ageSeconds >= 1, `age ${stale.ageSeconds}`);
  assert.match(stale.texts[1], STALE_LINE);
  const log = await requests();
  assert.deepEqual(log.map((r) => r.status), [200, 500]);

  const stats = await call(client, 'get_cache_stats');
  assert.deepEqual(
    { failures: stats.github.failures, staleServed: stats.github.staleServed, requests: stats.github.requests },
    { failures: 1, staleServed: 1, requests: 2 },
  );
  assert.deepEqual(
    { state: stats.circuitBreaker.state, failureCount: stats.circuitBreaker.failureCount },
    { state: 'CLOSED', failureCount: 1 },
  );
});

test('a rate limit opens the breaker: stale copies served, no request until the reset', async (t) => {
  const db = dbIn(t);
  const { client } = await startServer(t, db, { ttl: 1 });
  const fresh = await call(client, 'get_component', { name: 'button' });
  await sleep(1.1); // the copy expires (TIERSTACK_TTL=1)
  const reset = nowS() + 5;
  const until = new Date(reset * 1000).toISOString();
  await fault({
    status: 403,
    headers: [['X-RateLimit-Remaining', '0'], ['X-RateLimit-Reset', String(reset)]],
    body: '{"message":"API rate limit exceeded"}',
    times: 1,
  });
  const stale = await call(client, 'get_component', { name: 'button' });
  assert.equal(stale.texts[0], fresh.texts[0]);
  assert.equal(stale.stale, true);
  assert.match(stale.texts[1], /^\(stale: served from the cache, \d+ s old; GitHub is unavailable \(circuit breaker open until (.*)\)\)$/);
  assert.equal(stale.texts[1].match(/until (.*)\)\)$/)[1], until);
  assert.equal(await count(), 2);

  const stats = await call(client, 'get_cache_stats');
  assert.deepEqual(
    { state: stats.circuitBreaker.state, nextAttemptTime: stats.circuitBreaker.nextAttemptTime },
    { state: 'OPEN', nextAttemptTime: until },
  );

  // While open: the stale copy again, errors for what has none, no request.
  assert.equal((await call(client, 'get_component', { name: 'button' })).stale, true);
  assert.equal(
    await callFails(client, 'get_component', { name: 'card' }),
    `GitHub is unavailable (circuit breaker open until ${until}) and no copy of component "card" (react) is cached. Try again later.`,
  );
  assert.match(await callFails(client, 'list_components'), /^GitHub is unavailable \(circuit breaker open/);
  // Another server process on the file honours the same breaker.
  const other = await startServer(t, db, { ttl: 1 });
  assert.match(await callFails(other.client, 'get_block', { name: 'login-01' }), /^GitHub is unavailable/);
  const otherStats = await call(other.client, 'get_cache_stats');
  assert.equal(otherStats.circuitBreaker.state, 'OPEN');
  assert.equal(otherStats.circuitBreaker.nextAttemptTime, until);
  assert.equal(await count(), 2);

  // After the reset GitHub is asked again.
  await sleep((reset * 1000 - Date.now() + 50) / 1000);
  const card = await call(client, 'get_component', { name: 'card' });
  assert.equal(firstLine(card.texts[0]), `// ${BASE}/ui/card.tsx`);
  assert.equal(card.tier, 'source');
  assert.equal(await count(), 3);
});

test('get_cache_stats counts hits per tier, misses and the breaker', async (t) => {
  const { client } = await startServer(t, dbIn(t));
  const empty = await call(client, 'get_cache_stats');
  assert.deepEqual(
    { hits: empty.hits, misses: empty.misses, hitRate: empty.hitRate, breaker: empty.circuitBreaker },
    { hits: 0, misses: 0, hitRate: 0, breaker: { state: 'CLOSED', failureCount: 0, nextAttemptTime: null, trips: 0 } },
  );
  assert.match(empty.texts[0], /"state": "CLOSED"/);

  await call(client, 'get_component', { name: 'button' });
  await call(client, 'get_component', { name: 'button' });
  await call(client, 'get_component', { name: 'button' });
  await call(client, 'list_components');
  const stats = await call(client, 'get_cache_stats');
  assert.deepEqual(
    { hits: stats.hits, misses: stats.misses, tiers: stats.tiers.map(({ tier, hits }) => ({ tier, hits })) },
    { hits: 2, misses: 2, tiers: [{ tier: 'memory', hits: 2 }, { tier: 'sqlite', hits: 0 }] },
  );
  assert.equal(stats.hitRate, 50);
  assert.deepEqual(
    { requests: stats.github.requests, failures: stats.github.failures, rejected: stats.github.rejected },
    { requests: 2, failures: 0, rejected: 0 },
  );
  assert.equal(stats.circuitBreaker.state, 'CLOSED');
  assert.equal(await count(), 2);
});
