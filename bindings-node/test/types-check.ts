// Type-checked with `tsc --noEmit --strict` by tests/run-node (never run):
// the generated index.d.ts describes how HybridStorage is used.
import {
  HybridStorage,
  type HybridStorageConfig,
  type LookupResult,
  type Metadata,
  type SetOptions,
  type StorageStats,
  type TierStats,
} from 'tierstack';

interface Component {
  name: string;
  files: string[];
}

const config: HybridStorageConfig = {
  namespace: 'components',
  memory: { enabled: true, maxSize: 16 * 1024 * 1024, ttl: 3600 },
  sqlite: {
    enabled: true,
    path: '/tmp/components.db',
    maxSize: 64 * 1024 * 1024,
    ttl: 86400,
    coherenceInterval: 0.05,
  },
  failSafe: { maxStale: 600 },
};

export async function use(storage: HybridStorage = new HybridStorage(config)): Promise<number> {
  const options: SetOptions = { ttl: 60, tags: ['ui'] };
  await storage.set('component:button', { name: 'button', files: [] }, options);
  await storage.set('raw', Buffer.from('bytes'), 30);
  const button: Component | undefined = await storage.get<Component>('component:button');
  const bytes: Buffer | undefined = await storage.getBuffer('raw');
  const found: Map<string, Component> = await storage.mget<Component>(['component:button']);
  await storage.mset(new Map<string, unknown>([['a', 1]]), null);
  await storage.mset({ b: 2 });
  const hit: LookupResult | undefined = await storage.lookup('component:button');
  const tier: string | undefined = hit?.tier;
  const meta: Metadata | undefined = await storage.getMetadata('component:button');
  const loaded: Component = await storage.getOrLoad('component:card', async () => ({ name: 'card', files: [] }), 60);
  const existed: boolean = (await storage.has('a')) && (await storage.delete('a'));
  const keys: string[] = await storage.keys('component:*');
  const size: number = await storage.size();
  const removed: number = await storage.invalidateTag('ui');
  await storage.flush();
  const stats: StorageStats = storage.getStats();
  const memory: TierStats | undefined = stats.tiers.find((t) => t.tier === 'memory');
  const total: number = stats.hits + stats.misses + stats.hitRate + stats.totalOperations;
  const dropped: number = stats.invalidations + stats.resyncs;
  const times: number = stats.avgResponseTimes.memory + stats.avgResponseTimes.sqlite;
  const breaker: null = storage.getCircuitBreakerStatus();
  await storage.clear();
  await storage.dispose();
  const disposed: boolean = storage.isDisposed();
  return [button?.name, bytes?.length, found.size, tier, meta?.createdAt, loaded.name, existed, keys, size,
    removed, memory?.avgTimeUs, total, dropped, times, breaker, disposed].length;
}
