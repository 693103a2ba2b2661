// A process sharing a cache file with kept.test.mjs: `node kept-writer.mjs
// <db> <key> <json>` stores the parsed <json> under <key>, then exits.
import { HybridStorage } from 'tierstack';

const [db, key, json] = process.argv.slice(2);
const storage = new HybridStorage({ sqlite: { path: db } });
await storage.set(key, JSON.parse(json));
await storage.dispose();
