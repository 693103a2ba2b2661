// Another process on a cache file with GitHub as its source:
// `node github-child.mjs <config json> <key>` reads <key> (as bytes) and
// prints one JSON line: `code` ('ok', 'not_found' or the error's code) and
// the breaker's `state` and `nextAttemptTime` as this process sees them.
import { HybridStorage } from 'tierstack';

const [config, key] = process.argv.slice(2);
const storage = new HybridStorage(JSON.parse(config));
let code;
try {
  code = (await storage.get(key)) === undefined ? 'not_found' : 'ok';
} catch (err) {
  code = err.code;
}
const { state, nextAttemptTime } = storage.getCircuitBreakerStatus();
process.stdout.write(`${JSON.stringify({ code, state, nextAttemptTime })}\n`);
await storage.dispose();
