// The reader process of coherence.test.mjs.
//
// `node coherence-reader.mjs <db path> <coherence interval> <key>` opens a
// storage (L1 on) on the file and asks, in a tight loop, what `get`, `has`,
// `keys` and `size` answer about the key. Each time one of these answers
// changes it prints a JSON line `{probe, state, old, new}`: the new answer,
// the wall-clock start (ms since the epoch, `performance.timeOrigin +
// performance.now()`: a clock every process shares) of the last call that
// gave the previous answer, and that of the first call that gave the new one.
// The first answers are printed with `old: null`. A line on stdin ends the
// loop; the reader then prints `{stats}` and exits.
import { HybridStorage } from 'tierstack';

const [path, interval, key] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

let stop = false;
process.stdin.once('data', () => {
  stop = true;
});

const storage = new HybridStorage({ sqlite: { path, coherenceInterval: Number(interval) } });
const probes = {
  get: () => storage.get(key),
  has: () => storage.has(key),
  keys: async () => (await storage.keys()).includes(key),
  size: () => storage.size(),
};
const last = Object.fromEntries(Object.keys(probes).map((name) => [name, { state: Symbol('unseen'), at: null }]));
print({ ready: true });
while (!stop) {
  for (const [name, probe] of Object.entries(probes)) {
    const start = now();
    const state = (await probe()) ?? null;
    const seen = last[name];
    if (state !== seen.state) print({ probe: name, state, old: seen.at, new: start });
    last[name] = { state, at: start };
  }
  // Reads resolve without leaving the JS thread: let stdin be read.
  await new Promise(setImmediate);
}
print({ stats: storage.getStats() });
await storage.dispose();
process.stdin.destroy();
