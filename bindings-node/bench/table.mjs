// The addon against its peers, side by side in one process: `lru-cache` (the
// npm memory cache) and the storage design tierstack replaces
// (`bench/reference.mjs`: a `Map` of objects with metadata and stats per
// entry, over JSON text in a better-sqlite3 table). The working set is 10,000
// UI component objects of ~1.7 KB of JSON, far more than a hot set, read in a
// fixed random order that visits every key once per pass:
//
//   - memory hit: `await get(key)` against lru-cache's `get(key)` (sync, as
//     it is called) and the replaced design's `await get(key)`;
//   - `await mget(keys)` of 100 memory hits against the replaced design's
//     `mget` and 100 lru-cache `get`s into a `Map`;
//   - file hit with the memory tier off, `await get(key)`, against the
//     replaced design with its memory tier off (better-sqlite3 and
//     `JSON.parse`);
//   - `await set(key, value)` into both tiers against the replaced design's
//     `set` (its `Map` and better-sqlite3); every set writes a new key.
//
// Each scenario runs in rounds that take the contenders in turn, in an order
// that alternates between rounds (so a slower stretch of a shared machine
// falls on all alike), after one warm-up round; a figure is the median of
// the rounds' means. Every value read is checked out of the timed stretch
// (deeply in the warm-up round, by its identifying fields after), and every
// key a set wrote is read back from the file at the end: a miss or a wrong
// value fails the run. The targets are issue 10's (absolute times derived
// from the design measured with PGLite, far slower than better-sqlite3).
//
//   npm run build:release && node bench/table.mjs [--json PATH]
//   node bench/table.mjs --quick --json out.json   # seconds; a smoke run
//
// `--json PATH` writes the rows as `{host, quick, peers, rows}`, the schema
// the report generator reads (see `report` below).

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';

import { LRUCache } from 'lru-cache';

import { HybridStorage } from '../index.mjs';
import { ReferenceHybridStorage } from './reference.mjs';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const jsonAt = argv.indexOf('--json');
const jsonPath = jsonAt >= 0 ? argv[jsonAt + 1] : undefined;
if (jsonAt >= 0 && !jsonPath) throw new Error('--json needs a path');

const KEYS = quick ? 1_000 : 10_000;
const ROUNDS = quick ? 1 : 9;
const COUNT = quick
  ? { hit: 2_000, mget: 20, file: 1_000, set: 100 }
  : { hit: 100_000, mget: 1_000, file: 20_000, set: 800 }; // set: per round, each a new key
const CHUNK = 1_000; // operations timed at a stretch; their results are checked between stretches

/** A UI component as the MCP server caches it: ~1.7 KB of JSON. */
function component(i) {
  const name = `button-${i}`;
  const source =
    `import * as React from "react"\nimport { Slot } from "@radix-ui/react-slot"\n` +
    `import { cva } from "class-variance-authority"\nimport { cn } from "@/lib/utils"\n\n` +
    `const buttonVariants = cva("inline-flex items-center justify-center gap-2 rounded-md text-sm font-medium", {\n` +
    `  variants: {\n    variant: { default: "bg-primary text-primary-foreground", outline: "border bg-background" },\n` +
    `    size: { default: "h-9 px-4 py-2", sm: "h-8 px-3", lg: "h-10 px-6" },\n  },\n` +
    `  defaultVariants: { variant: "default", size: "default" },\n})\n\n` +
    `function Button${i}({ className, variant, size, asChild = false, ...props }) {\n` +
    `  const Comp = asChild ? Slot : "button"\n` +
    `  return <Comp data-slot="button" className={cn(buttonVariants({ variant, size, className }))} {...props} />\n}\n\n` +
    `export { Button${i}, buttonVariants }\n`;
  const demo =
    `import { Button${i} } from "@/components/ui/${name}"\n\n` +
    `export function ButtonDemo${i}() {\n  return (\n    <div className="flex flex-wrap items-center gap-2 md:flex-row">\n` +
    `      <Button${i}>Button</Button${i}>\n      <Button${i} variant="outline">Outline</Button${i}>\n` +
    `      <Button${i} size="sm">Small</Button${i}>\n    </div>\n  )\n}\n`;
  return {
    framework: 'react',
    name,
    type: 'registry:ui',
    description: 'Displays a button or a component that looks like a button.',
    sourceCode: source,
    demoCode: demo,
    dependencies: ['@radix-ui/react-slot', 'class-variance-authority'],
    registryDependencies: ['utils'],
    docs: 'https://ui.shadcn.com/docs/components/button',
    githubSha: `5f3c1a9e${String(i).padStart(8, '0')}b2d47e6a0c19f8`,
    fileSize: source.length,
    lastModified: '2025-05-01T12:00:00.000Z',
    meta: { version: 4, stars: 1536, tags: ['button', 'form', 'ui'] },
  };
}

const keys = Array.from({ length: KEYS }, (_, i) => `component:react:button-${i}`);
const values = keys.map((_, i) => component(i));
const index = new Map(keys.map((key, i) => [key, i]));
const meanKB = values.reduce((sum, v) => sum + Buffer.byteLength(JSON.stringify(v)), 0) / KEYS / 1000;
const workload = `${KEYS.toLocaleString('en-US')} × ${meanKB.toFixed(1)} KB objects`;

/** Fails unless `value` is the component stored under `key`: deeply, or by its identifying fields. */
function check(name, key, value, deep) {
  const expected = values[index.get(key)];
  const same = deep
    ? isDeepStrictEqual(value, expected)
    : value !== undefined &&
      value !== null &&
      value.name === expected.name &&
      value.githubSha === expected.githubSha &&
      value.sourceCode === expected.sourceCode &&
      value.demoCode === expected.demoCode &&
      value.meta?.version === 4;
  if (!same) {
    const shown = value === undefined ? 'a miss' : JSON.stringify(value)?.slice(0, 80);
    throw new Error(`${name}: the read of ${key} gave ${shown}, not the stored component`);
  }
}

/** A seeded generator (mulberry32), so every contender reads the same order. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` keys: shuffled passes over every key, then part of one more. */
function randomOrder(count, seed) {
  const next = random(seed + 1);
  const order = [];
  while (order.length < count) {
    const pass = [...keys];
    for (let i = pass.length - 1; i > 0; i--) {
      const j = Math.floor(next() * (i + 1));
      [pass[i], pass[j]] = [pass[j], pass[i]];
    }
    order.push(...pass);
  }
  return order.slice(0, count);
}

/**
 * µs per operation over `items`: `op(item)` awaited (or called, if `sync`),
 * timed CHUNK at a time, each chunk's results handed to `verify(item,
 * result)` between the timed stretches.
 */
async function timeOps(items, op, sync, verify) {
  const results = new Array(CHUNK);
  let elapsed = 0n;
  for (let at = 0; at < items.length; at += CHUNK) {
    const end = Math.min(at + CHUNK, items.length);
    const start = process.hrtime.bigint();
    if (sync) {
      for (let i = at; i < end; i++) results[i - at] = op(items[i]);
    } else {
      for (let i = at; i < end; i++) results[i - at] = await op(items[i]);
    }
    elapsed += process.hrtime.bigint() - start;
    for (let i = at; i < end; i++) verify(items[i], results[i - at]);
  }
  return Number(elapsed) / 1000 / items.length;
}

function median(xs) {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * The median over ROUNDS rounds (after one warm-up round, round 0) of each
 * contender's `measure(round)`; the order alternates between rounds.
 */
async function rounds(contenders) {
  const names = Object.keys(contenders);
  const samples = Object.fromEntries(names.map((name) => [name, []]));
  for (let round = 0; round <= ROUNDS; round++) {
    for (const name of round % 2 === 0 ? names : [...names].reverse()) {
      const us = await contenders[name](round);
      if (round > 0) samples[name].push(us);
    }
  }
  return Object.fromEntries(names.map((name) => [name, median(samples[name])]));
}

/** A contender reading `count` keys in the round's random order with `read`. */
const reads = (name, count, read, sync = false) => (round) =>
  timeOps(randomOrder(count, round), read, sync, (key, value) => check(name, key, value, round === 0));

/** Fails unless every key is served by `tier` (a read that changes nothing else). */
async function expectTier(storage, tier) {
  for (const key of keys) {
    const found = await storage.lookup(key);
    if (found?.tier !== tier) throw new Error(`${key} was served by ${found?.tier}, not ${tier}`);
  }
}

function version(name) {
  const manifest = new URL(`../node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(manifest, 'utf8')).version;
}

const figure = (x) => Number(x.toPrecision(4));
const PEER = {
  lru: 'lru-cache LRUCache',
  lruMany: 'lru-cache LRUCache, 100 get into a Map',
  design: 'the replaced design (Map + metadata)',
  designFile: 'the replaced design over better-sqlite3',
};

const dir = mkdtempSync(join(tmpdir(), 'tierstack-table-'));
const opened = [];
const open = (storage) => {
  opened.push(storage);
  return storage;
};
try {
  // Filled once: every key in both tiers of each side, and in lru-cache.
  const refPath = join(dir, 'reference.db');
  const oursPath = join(dir, 'tierstack.db');
  const ref = open(new ReferenceHybridStorage({ path: refPath }));
  const ours = open(new HybridStorage({ sqlite: { path: oursPath } }));
  const lru = new LRUCache({ max: 2 * KEYS });
  await ours.mset(new Map(keys.map((key, i) => [key, values[i]])));
  await ours.flush();
  for (let i = 0; i < KEYS; i++) {
    await ref.set(keys[i], values[i]);
    lru.set(keys[i], values[i]);
  }
  await expectTier(ours, 'memory');

  const rows = [];
  const row = (scenario, tierstack, peer, peerValue, target) =>
    rows.push({
      scenario: `${scenario}, ${workload}`,
      unit: 'µs',
      tierstack: figure(tierstack),
      peer,
      peer_value: figure(peerValue),
      ratio: figure(tierstack / peerValue),
      lower_is_better: true,
      target,
    });

  // Memory hit.
  const hit = await rounds({
    tierstack: reads('tierstack get', COUNT.hit, (key) => ours.get(key)),
    lru: reads('lru-cache get', COUNT.hit, (key) => lru.get(key), true),
    design: reads('replaced design get', COUNT.hit, (key) => ref.get(key)),
  });
  if (ours.getStats().tiers[0].misses !== 0 || ref.stats.hits.pglite !== 0) {
    throw new Error('a memory-hit read was not served by memory');
  }
  row('get, memory hit', hit.tierstack, PEER.lru, hit.lru);
  row('get, memory hit', hit.tierstack, PEER.design, hit.design, 0.78);

  // `mget` of 100 memory hits: the keys of a random pass, 100 at a time.
  const batchesOf = (round) => {
    const order = randomOrder(COUNT.mget * 100, round);
    return Array.from({ length: COUNT.mget }, (_, b) => order.slice(b * 100, b * 100 + 100));
  };
  const checkMap = (name, deep) => (batch, map) => {
    if (map.size !== batch.length) throw new Error(`${name}: ${map.size} of ${batch.length} found`);
    for (const key of batch) check(name, key, map.get(key), deep);
  };
  const many = (name, mget, sync = false) => (round) =>
    timeOps(batchesOf(round), mget, sync, checkMap(name, round === 0));
  const lruMget = (batch) => {
    const found = new Map();
    for (const key of batch) {
      const value = lru.get(key);
      if (value !== undefined) found.set(key, value);
    }
    return found;
  };
  const mget = await rounds({
    tierstack: many('tierstack mget', (batch) => ours.mget(batch)),
    lru: many('lru-cache get × 100', lruMget, true),
    design: many('replaced design mget', (batch) => ref.mget(batch)),
  });
  row('mget of 100, memory hits', mget.tierstack, PEER.lruMany, mget.lru);
  row('mget of 100, memory hits', mget.tierstack, PEER.design, mget.design, 60);

  // File hit, memory off: the same files, opened again without a memory tier.
  const refFile = open(new ReferenceHybridStorage({ path: refPath, memory: { enabled: false } }));
  const oursFile = open(new HybridStorage({ memory: { enabled: false }, sqlite: { path: oursPath } }));
  await expectTier(oursFile, 'sqlite');
  const file = await rounds({
    tierstack: reads('tierstack get (memory off)', COUNT.file, (key) => oursFile.get(key)),
    design: reads('replaced design get (memory off)', COUNT.file, (key) => refFile.get(key)),
  });
  row('get, file hit (memory tier off)', file.tierstack, PEER.designFile, file.design, 10.7);

  // `set` into both tiers, into storages of their own; round r writes keys
  // [r × n, (r + 1) × n), so every set writes a key not written before.
  if ((ROUNDS + 1) * COUNT.set > KEYS) throw new Error('too few keys for every set to write a new key');
  const refSetPath = join(dir, 'reference-set.db');
  const oursSetPath = join(dir, 'tierstack-set.db');
  const refSet = open(new ReferenceHybridStorage({ path: refSetPath }));
  const oursSet = open(new HybridStorage({ sqlite: { path: oursSetPath } }));
  const roundItems = (round) => Array.from({ length: COUNT.set }, (_, i) => round * COUNT.set + i);
  const writes = (storage) => (round) => timeOps(roundItems(round), (i) => storage.set(keys[i], values[i]), false, () => {});
  const set = await rounds({ tierstack: writes(oursSet), design: writes(refSet) });
  await oursSet.flush();
  const refBack = open(new ReferenceHybridStorage({ path: refSetPath, memory: { enabled: false } }));
  const oursBack = open(new HybridStorage({ memory: { enabled: false }, sqlite: { path: oursSetPath } }));
  for (const key of keys.slice(0, (ROUNDS + 1) * COUNT.set)) {
    check('tierstack set, read back from the file', key, await oursBack.get(key), true);
    check('replaced design set, read back from the file', key, await refBack.get(key), true);
  }
  row('set, both tiers', set.tierstack, PEER.designFile, set.design, 135);

  const peers = { 'lru-cache': version('lru-cache'), 'better-sqlite3': version('better-sqlite3') };
  const fmt = (us) => `${us >= 100 ? us.toFixed(0) : us >= 10 ? us.toFixed(1) : us.toFixed(2)} µs`;
  console.log(
    `node ${process.version}, lru-cache ${peers['lru-cache']}, better-sqlite3 ${peers['better-sqlite3']}: ` +
      `${workload}, median of ${ROUNDS} rounds`,
  );
  console.log('');
  console.log('| scenario | tierstack | peer | ratio | target (issue 10) |');
  console.log('|---|---|---|---|---|');
  let unmet = 0;
  for (const each of rows) {
    let target = '';
    if (each.target !== undefined) {
      const met = each.tierstack <= each.target;
      if (!met) unmet++;
      target = `≤ ${fmt(each.target)}: ${met ? 'met' : 'NOT met'}`;
    }
    console.log(
      `| ${each.scenario} | ${fmt(each.tierstack)} | ${each.peer} ${fmt(each.peer_value)} | ` +
        `${each.ratio.toFixed(2)}× | ${target} |`,
    );
  }
  if (jsonPath) {
    const report = {
      host: 'node',
      quick,
      peers,
      rows: rows.map(({ target, ...each }) => each),
    };
    writeFileSync(jsonPath, JSON.stringify(report, null, 2) + '\n');
  }
  if (quick) {
    console.log('\n(--quick: a smoke run that checks every value; its figures are not a measurement)');
  } else if (unmet > 0) {
    console.log(`\n${unmet} of issue 10's targets not met (they are reported; the run stands)`);
  }
} finally {
  for (const storage of opened) await storage.dispose();
  rmSync(dir, { recursive: true, force: true });
}
