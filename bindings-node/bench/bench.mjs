// `await storage.get(key)` on an L1 hit and on an L2 hit, with ~2 KB
// component objects, against plain JS peers measured in the same run:
//   - L1 peer: an async get over a Map holding the objects (what the
//     TypeScript design's memory tier did);
//   - L2 peer: an async get over a Map holding the JSON text, parsed on
//     every read (the decode every L2 read needs, with no storage at all).
// It prints the ratios against those peers and the speed-ups against the
// reference figures of the TypeScript design: 7.8 µs per L1 hit and
// 1,851 µs per L2 hit. `await storage.getOrLoad(key, loader)` on an L1 hit
// is measured against `await storage.get(key)` in the same rounds (target:
// at most 1.1× its time; the ratio is the median of the rounds' ratios).
//
//   node bench/bench.mjs            # build with `npm run build:release` first
//   node bench/bench.mjs --quick    # a short run (used by tests/run-node)

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { HybridStorage } from '../index.mjs';

const quick = process.argv.includes('--quick');
const KEYS = 1000;
const READS = quick ? 20_000 : 200_000;
const ROUNDS = quick ? 3 : 7;
const REFERENCE = { l1: 7.8, l2: 1851 };
const TARGET = { l1: 10, l2: 200, getOrLoadToGet: 1.1 };

/** A UI component as the MCP server caches it: ~2 KB of JSON. */
function component(i) {
  const source = `export function Button${i}({ variant = "default", size = "md", ...props }) {\n` +
    '  const classes = cn(buttonVariants({ variant, size }), props.className);\n' +
    '  return <button className={classes} {...props} />;\n}\n';
  return {
    name: `button-${i}`,
    type: 'registry:ui',
    description: 'Displays a button or a component that looks like a button.',
    dependencies: ['@radix-ui/react-slot', 'class-variance-authority'],
    registryDependencies: ['utils'],
    files: [
      { path: `ui/button-${i}.tsx`, type: 'registry:ui', content: source.repeat(5) },
      { path: `ui/button-${i}.css`, type: 'registry:style', content: '.btn { display: inline-flex; }\n'.repeat(8) },
    ],
    meta: { version: 3, updatedAt: '2024-05-01T12:00:00Z', stars: 1536, tags: ['button', 'form', 'ui'] },
  };
}

const keys = Array.from({ length: KEYS }, (_, i) => `component:button-${i}`);
const values = keys.map((_, i) => component(i));
const jsonBytes = Buffer.byteLength(JSON.stringify(values[0]));

/**
 * Mean µs per `await read(key)` over READS reads, for each reader, per
 * round; the rounds take the readers in turn, so a slower stretch of a
 * shared machine falls on all of them alike. Every value is checked.
 */
async function timeRounds(readers) {
  const samples = Object.fromEntries(Object.keys(readers).map((name) => [name, []]));
  for (let round = 0; round <= ROUNDS; round++) {
    for (const [name, read] of Object.entries(readers)) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < READS; i++) {
        const value = await read(keys[i % KEYS]);
        if (value === undefined || value.meta.version !== 3) {
          throw new Error(`${name}: read ${i} of ${keys[i % KEYS]} missed`);
        }
      }
      const us = Number(process.hrtime.bigint() - start) / 1000 / READS;
      if (round > 0) samples[name].push(us); // round 0 warms up
    }
  }
  return samples;
}

function median(xs) {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const dir = mkdtempSync(join(tmpdir(), 'tierstack-bench-'));
try {
  const path = join(dir, 'bench.db');
  const writer = new HybridStorage({ sqlite: { path } });
  await writer.mset(new Map(keys.map((k, i) => [k, values[i]])));
  await writer.flush();

  const l1 = writer;
  for (const key of keys) await l1.get(key);
  const l2 = new HybridStorage({ memory: { enabled: false }, sqlite: { path } });

  const objects = new Map(keys.map((k, i) => [k, values[i]]));
  const texts = new Map(keys.map((k, i) => [k, JSON.stringify(values[i])]));
  const mapGet = async (key) => objects.get(key);
  const mapParseGet = async (key) => JSON.parse(texts.get(key));

  const neverCalled = (key) => {
    throw new Error(`the loader ran for ${key}: the read was not an L1 hit`);
  };
  const samples = await timeRounds({
    l1: (key) => l1.get(key),
    l1GetOrLoad: (key) => l1.getOrLoad(key, neverCalled),
    l1Peer: mapGet,
    l2: (key) => l2.get(key),
    l2Peer: mapParseGet,
  });
  const results = Object.fromEntries(Object.entries(samples).map(([name, xs]) => [name, median(xs)]));
  // getOrLoad against get round by round: the two ran back to back.
  const getOrLoadRatio = median(samples.l1GetOrLoad.map((us, round) => us / samples.l1[round]));
  const stats = { l1: l1.getStats(), l2: l2.getStats() };
  if (stats.l1.tiers[0].hits < 2 * READS || stats.l2.tiers[0].tier !== 'sqlite' || stats.l2.tiers[0].hits < READS) {
    throw new Error('the reads were not served by the tier measured');
  }
  await l1.dispose();
  await l2.dispose();

  const fmt = (us) => (us >= 100 ? us.toFixed(0) : us.toFixed(3)).padStart(9) + ' µs';
  console.log(`node ${process.version}, ${KEYS} keys of ${jsonBytes} bytes of JSON, ${READS} reads per round, median of ${ROUNDS} rounds`);
  console.log('');
  console.log('| read | tierstack | peer in this run | ratio to peer | reference (TS design) | speed-up | target |');
  console.log('|---|---|---|---|---|---|---|');
  const row = (name, ours, peerName, peer, reference, target) => {
    const speedup = reference / ours;
    console.log(
      `| ${name} | ${fmt(ours)} | ${peerName} ${fmt(peer)} | ${(ours / peer).toFixed(2)}× | ${reference.toLocaleString('en-US')} µs | ` +
        `${speedup.toFixed(1)}× | ≥ ${target}× ${speedup >= target ? 'met' : 'NOT met'} |`,
    );
    return speedup >= target;
  };
  const l1Met = row('L1 hit, `await get`', results.l1, 'Map', results.l1Peer, REFERENCE.l1, TARGET.l1);
  const getOrLoadMet = getOrLoadRatio <= TARGET.getOrLoadToGet;
  console.log(
    `| L1 hit, \`await getOrLoad\` | ${fmt(results.l1GetOrLoad)} | \`await get\` ${fmt(results.l1)} | ${getOrLoadRatio.toFixed(2)}× | | | ` +
      `≤ ${TARGET.getOrLoadToGet}× of \`get\` ${getOrLoadMet ? 'met' : 'NOT met'} |`,
  );
  const l2Met = row('L2 hit (L1 off), `await get`', results.l2, 'Map + JSON.parse', results.l2Peer, REFERENCE.l2, TARGET.l2);
  if (quick) {
    console.log('\n(--quick: a smoke run that checks every read; its figures are not a measurement)');
  } else if (!(l1Met && getOrLoadMet && l2Met)) {
    process.exitCode = 1;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
