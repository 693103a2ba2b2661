// Type-checked with `tsc --noEmit --strict` by tests/run-node (never run):
// the generated index.d.ts describes how HybridStorage is used.
import {
  HybridStorage,
  Loaded,
  advanceTestClock,
  type CircuitBreakerStatus,
  type DeadLetter,
  type GitHubOptions,
  type GitHubRoute,
  type HybridStorageConfig,
  type HybridStorageOptions,
  type SourceStats,
  type StorageSource,
  type LookupResult,
  type Metadata,
  type OutboxOptions,
  type OutboxStats,
  type RateLimit,
  type RedisOptions,
  type RedisStats,
  type BackplaneStats,
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
  failSafe: { maxStale: 600, softTimeout: 1, hardTimeout: 30 },
  circuitBreaker: {
    threshold: 5, failureRate: 0.5, minimumCalls: 10, window: 60, slowCall: 10, timeout: 60,
    maxTimeout: 600, halfOpenProbes: 1, successThreshold: 2,
  },
  negativeTtl: 60,
  refreshAhead: 0.8,
  ttlJitter: 0.1,
};

// GitHub as the source: a preset, or routes of one's own (file and listing).
const docs: GitHubRoute[] = [
  { key: 'doc:{name}', owner: 'me', repo: 'docs', ref: 'main', path: 'pages/{name}.md' },
  { key: 'docs', owner: 'me', repo: 'docs', listing: 'pages', suffix: '.md', items: 'doc:{name}', only: {} },
];
const github: GitHubOptions = {
  enabled: true, token: 'ghp_x', apiUrl: 'https://api.github.com', rawUrl: 'https://raw.githubusercontent.com',
  timeout: 30, maxBodyBytes: 5 * 1024 * 1024, routes: docs,
};
const fromGitHub: HybridStorageConfig[] = [
  { github },
  { github: { routes: 'shadcn-v4' } },
  // The spelling of the design this replaces.
  { github: { enabled: true, apiKey: 'ghp_x', baseUrl: 'https://api.github.com' } },
];

const options: HybridStorageOptions = {
  source: async (key: string) => (key.startsWith('component:') ? { name: key, files: [] } : undefined),
  markStale: true,
};
const withLoad: HybridStorageOptions = { source: { load: (key: string) => new Loaded(key, { ttl: 60 }) } };

// A writable source, and the strategies that write to it.
const writable: StorageSource = {
  load: async (key: string) => (await fetch(`http://127.0.0.1:9/store/${key}`)).json(),
  store: async (key: string, value: unknown, idempotencyKey: string) =>
    fetch(`http://127.0.0.1:9/store/${key}`, {
      method: 'PUT', headers: { 'idempotency-key': idempotencyKey }, body: JSON.stringify(value),
    }),
  remove: (key: string, idempotencyKey: string) => {
    void key;
    void idempotencyKey;
  },
};
const outbox: OutboxOptions = {
  maxAttempts: 8, retryBase: 0.5, retryMax: 60, batch: 32, flushTimeout: 30, closeTimeout: 5,
};
const behind: HybridStorageConfig = { strategy: 'write-behind', outbox };
const strategies: HybridStorageConfig[] = [
  { strategy: 'read-through' }, { strategy: 'cache-aside' }, { strategy: 'write-through' }, behind,
];

export async function use(storage: HybridStorage = new HybridStorage(config, options)): Promise<number> {
  const other = new HybridStorage(null, withLoad);
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
  const meta: Metadata | null = await storage.getMetadata('component:button');
  const loaded: Component | undefined = await storage.getOrLoad(
    'component:card', async (key: string) => ({ name: key, files: [] }), 60);
  const missing: Component | undefined = await storage.getOrLoad<Component>('component:none', () => undefined);
  const many: Map<string, Component> = await storage.getOrLoadMany<Component>(
    ['component:a', 'component:b'], async (keys: string[]) => new Map(keys.map((k) => [k, { name: k, files: [] }])));
  const fromObject: Map<string, number> = await storage.getOrLoadMany<number>(['n'], (keys) => ({ [keys[0]]: 1 }));
  const rawLoaded: Buffer | undefined = await storage.getOrLoadBuffer('raw2', () => Buffer.from('x'));
  const rawMany: Map<string, Buffer> = await storage.getOrLoadManyBuffer(['raw3'], () => ({}));
  const loadedTier: 'memory' | 'sqlite' | 'source' | undefined = (await storage.lookup('component:card'))?.tier;
  const stale: boolean | undefined = (await storage.lookup('component:card'))?.stale;
  const existed: boolean = (await storage.has('a')) && (await storage.delete('a'));
  const keys: string[] = await storage.keys('component:*');
  const size: number = await storage.size();
  const removed: number = await storage.invalidateTag('ui');
  await storage.flush();
  const stats: StorageStats = storage.getStats();
  const memory: TierStats | undefined = stats.tiers.find((t) => t.tier === 'memory');
  const total: number =
    stats.hits.memory + stats.hits.sqlite + stats.hits.redis + stats.misses + stats.hitRate + stats.totalOperations;
  const available: boolean =
    stats.tierAvailability.memory && stats.tierAvailability.sqlite && stats.tierAvailability.redis &&
    stats.tierAvailability.source;
  const dropped: number = stats.invalidations + stats.resyncs;
  const times: number = stats.avgResponseTimes.memory + stats.avgResponseTimes.sqlite + stats.avgResponseTimes.redis;
  const breaker: CircuitBreakerStatus = storage.getCircuitBreakerStatus();
  const state: 'CLOSED' | 'OPEN' | 'HALF_OPEN' = breaker.state;
  const open: boolean = breaker.isOpen && breaker.isRequestAllowed;
  const failures: number = breaker.failureCount + breaker.trips;
  const lastFailure: number | null = breaker.lastFailureTime;
  const nextAttempt: number | null = breaker.nextAttemptTime;
  storage.openCircuitBreaker();
  storage.closeCircuitBreaker();
  storage.resetStats();
  const source: SourceStats = stats.source;
  const loads: number = source.requests + source.coalesced + source.staleServed + stats.circuitBreaker.failureCount;
  const rateLimit: RateLimit | null = source.rateLimit;
  const remaining: number | undefined = rateLimit?.remaining;
  const limit: number | null | undefined = rateLimit?.limit;
  const resetAt: Date | null | undefined = rateLimit?.resetAt;
  const writing = new HybridStorage(behind, { source: writable });
  const outboxStats: OutboxStats | null = writing.outboxStats();
  const pending: number | undefined = outboxStats?.pending;
  const oldestAge: number | null | undefined = outboxStats?.oldestAge;
  const durable: boolean | undefined = outboxStats?.durable;
  const inStats: OutboxStats | null = writing.getStats().outbox;
  const dead: DeadLetter[] = await writing.deadLetters();
  const op: 'store' | 'remove' | undefined = dead[0]?.op;
  const failedAt: Date | undefined = dead[0]?.failedAt;
  const lastError: string | undefined = dead[0]?.lastError;
  const requeued: number = await writing.retryDeadLetters();
  const purged: number = await writing.purgeDeadLetters();
  await writing.dispose();
  const viaGitHub = new HybridStorage(fromGitHub[0]);
  await viaGitHub.dispose();
  const redis: RedisOptions = {
    url: 'redis://127.0.0.1:6379/0', prefix: 'app:', timeout: 0.25, ttl: 600, backplane: true,
    backplaneMaxLen: 100_000, enabled: true,
  };
  const shared = new HybridStorage({ redis, sqlite: { path: 'shared.db' } });
  const redisStats: RedisStats | null = shared.getStats().redis;
  const backplane: BackplaneStats | null | undefined = redisStats?.backplane;
  const heard: number | undefined = backplane ? backplane.received + backplane.replayed + backplane.lagMs : undefined;
  const redisBreaker: CircuitBreakerStatus | undefined = redisStats?.breaker;
  const machines: number = shared.getStats().source.coalescedMachines;
  await shared.dispose();
  // Test only: a storage on the process's test clock, moved by hand.
  const timed = new HybridStorage({ testClock: true, sqlite: { path: 'timed.db' } });
  advanceTestClock(0.5);
  await timed.dispose();
  await other.dispose();
  await storage.clear();
  await storage.dispose();
  const disposed: boolean = storage.isDisposed();
  return [button?.name, bytes?.length, found.size, tier, meta?.createdAt, loaded?.name, existed, keys, size,
    removed, memory?.avgTimeUs, total, dropped, times, breaker, disposed, missing, many, fromObject, rawLoaded,
    rawMany, loadedTier, stale, state, open, failures, lastFailure, nextAttempt, loads, remaining, limit,
    resetAt?.getTime(), fromGitHub, available, meta?.updatedAt.getTime(), strategies, pending, oldestAge, durable,
    inStats, op, failedAt, lastError, requeued, purged, heard, redisBreaker, machines].length;
}
