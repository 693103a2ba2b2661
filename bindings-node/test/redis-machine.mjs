// A "machine" of redis.test.mjs: a process with its own memory tier and its
// own SQLite file, on the Redis the test started.
//
// `node redis-machine.mjs <config JSON>` opens a storage with that config
// and a source answering `origin of <key>`, prints `{"ready":true}`, then
// runs the commands it reads from stdin, one JSON object a line, one at a
// time, answering each with one JSON line:
//
// - `{op: 'get', key}`: `{value, tier}` of a `lookup`, or `{miss: true}`;
// - `{op: 'set', key, value}`: `{ok: true}` once the write resolved;
// - `{op: 'poll', key, value}`: looks the key up until it is `value` (10 s
//   at most), then `{tier}` of the read that saw it;
// - `{op: 'read', keys}`: `{values}`, each key's value or `null`;
// - `{op: 'burst', key, n, url}`: `n` concurrent `getOrLoad(key)` whose
//   loader fetches `url` (the test's origin); `{values}`, the distinct
//   values they resolved to;
// - `{op: 'stats'}`: `{stats}`, what `getStats()` answers;
// - `{op: 'quit'}`: disposes of the storage and exits.
import { createInterface } from 'node:readline';

import { HybridStorage } from 'tierstack';

const config = JSON.parse(process.argv[2]);
const storage = new HybridStorage(config, { source: async (key) => `origin of ${key}` });
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

async function run(command) {
  switch (command.op) {
    case 'get': {
      const found = await storage.lookup(command.key);
      return found === undefined ? { miss: true } : { value: found.value, tier: found.tier };
    }
    case 'set':
      await storage.set(command.key, command.value);
      return { ok: true };
    case 'poll': {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const found = await storage.lookup(command.key);
        if (found?.value === command.value) return { tier: found.tier };
        if (Date.now() > deadline) return { never: found?.value ?? null };
      }
    }
    case 'read': {
      const values = [];
      for (const key of command.keys) values.push((await storage.get(key)) ?? null);
      return { values };
    }
    case 'burst': {
      const loader = async () => {
        const response = await fetch(command.url);
        if (!response.ok) throw new Error(`the origin answered ${response.status}`);
        return response.text();
      };
      const values = await Promise.all(Array.from({ length: command.n }, () => storage.getOrLoad(command.key, loader)));
      return { values: [...new Set(values)] };
    }
    case 'stats':
      return { stats: storage.getStats() };
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}`);
  }
}

print({ ready: true });
for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line);
  if (command.op === 'quit') break;
  print(await run(command));
}
await storage.dispose();
