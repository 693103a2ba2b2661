// A process sharing a cache file with the tests: `node load-child.mjs
// <db> <log> <key> <calls> <mode>` runs <calls> concurrent getOrLoad of
// <key>; its loader appends this pid to <log>, then (mode `slow`) answers
// after 0.3 s, or (mode `hang`) prints `loading` and never answers. Prints
// the JSON array of the values it got.
import { appendFileSync } from 'node:fs';

import { HybridStorage } from 'tierstack';

const [db, log, key, calls, mode] = process.argv.slice(2);
const storage = new HybridStorage({ sqlite: { path: db }, failSafe: { hardTimeout: 1 } });
const loader = async () => {
  appendFileSync(log, `${process.pid}\n`);
  if (mode === 'hang') {
    process.stdout.write('loading\n');
    setInterval(() => {}, 1000);
    return new Promise(() => {});
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  return { loadedBy: process.pid };
};
const values = await Promise.all(Array.from({ length: Number(calls) }, () => storage.getOrLoad(key, loader)));
process.stdout.write(`${JSON.stringify(values)}\n`);
await storage.dispose();
