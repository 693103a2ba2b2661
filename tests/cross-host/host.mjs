// The Node participant of the cross-host test (see run.py):
//   host.mjs FILE write KEY HEX       stores the bytes HEX under KEY
//   host.mjs FILE read KEY            prints the value as hex, or MISS
//   host.mjs FILE write-json KEY JSON stores the parsed JSON as a JS value
//   host.mjs FILE read-json KEY       prints the value read with get(), as JSON
import { HybridStorage } from '../../bindings-node/index.mjs';

const [path, op, key, arg] = process.argv.slice(2);
const storage = new HybridStorage({ sqlite: { path } });
try {
  if (op === 'write') {
    await storage.set(key, Buffer.from(arg, 'hex'));
  } else if (op === 'read') {
    const value = await storage.getBuffer(key);
    console.log(value === undefined ? 'MISS' : value.toString('hex'));
  } else if (op === 'write-json') {
    await storage.set(key, JSON.parse(arg));
  } else if (op === 'read-json') {
    const value = await storage.get(key);
    console.log(JSON.stringify(value === undefined ? null : value));
  } else {
    process.exitCode = 2;
  }
} finally {
  await storage.dispose();
}
