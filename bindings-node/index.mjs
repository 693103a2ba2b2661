// The ES module entry point: the same addon as the CommonJS entry.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const native = require('./index.js');

export const { HybridStorage, Loaded, advanceTestClock } = native;
