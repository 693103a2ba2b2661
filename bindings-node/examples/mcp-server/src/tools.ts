// The server's tools. Each reads one cache key through the storage, which
// answers from memory, the shared SQLite file, or GitHub (shadcn/ui v4
// registry routes), and serves an expired copy when GitHub is unavailable.
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { HybridStorage } from 'tierstack';
import { z } from 'zod';

import { answer, isNames, isString, provenance } from './answer.js';

const name = z.string().min(1).describe('The name as in the registry, e.g. "button" or "login-01"');
const framework = z
  .string()
  .default('react')
  .describe('The framework the source is for (this registry serves "react")');

export function registerTools(server: McpServer, storage: HybridStorage): void {
  const file = (tool: string, title: string, description: string, prefix: string, noun: string) =>
    server.registerTool(
      tool,
      { title, description, inputSchema: { name, framework }, outputSchema: provenance },
      (args) =>
        answer(
          storage,
          { key: `${prefix}:${args.framework}:${args.name}`, what: `${noun} "${args.name}" (${args.framework})` },
          isString,
          (source) => source,
        ),
    );

  const listing = (tool: string, title: string, description: string, prefix: string, noun: string) =>
    server.registerTool(
      tool,
      {
        title,
        description,
        inputSchema: { framework },
        outputSchema: { ...provenance, names: z.array(z.string()) },
      },
      (args) =>
        answer(
          storage,
          { key: `${prefix}:${args.framework}`, what: `the ${noun} list (${args.framework})` },
          isNames,
          (names) => `${names.length} ${noun}:\n${names.join('\n')}`,
          (names) => ({ names }),
        ),
    );

  file('get_component', 'Component source', 'The source code of a shadcn/ui component.', 'component', 'component');
  file(
    'get_component_demo',
    'Component demo',
    'The source code of a usage example of a shadcn/ui component.',
    'component-demo',
    'component demo',
  );
  file('get_block', 'Block source', 'The source code of a shadcn/ui block (a page section).', 'block', 'block');
  listing('list_components', 'Components', 'The names of every shadcn/ui component.', 'components', 'components');
  listing('list_blocks', 'Blocks', 'The names of every shadcn/ui block.', 'blocks', 'blocks');

  server.registerTool(
    'get_cache_stats',
    {
      title: 'Cache statistics',
      description: 'Hits and misses per cache tier, GitHub requests, and the state of the circuit breaker.',
      outputSchema: cacheStats,
    },
    () => {
      const stats = statsOf(storage);
      return { content: [{ type: 'text', text: JSON.stringify(stats, null, 2) }], structuredContent: stats };
    },
  );
}

const cacheStats = {
  hits: z.number().describe('Reads some tier answered with a fresh value'),
  misses: z.number().describe('Reads no tier could answer fresh'),
  hitRate: z.number().describe('hits / (hits + misses) as a percentage, 0 before the first read'),
  tiers: z.array(z.object({ tier: z.string(), hits: z.number(), misses: z.number(), entries: z.number() })),
  github: z.object({
    requests: z.number(),
    failures: z.number(),
    notFound: z.number(),
    rejected: z.number().describe('Loads not attempted because the breaker was open'),
    staleServed: z.number(),
    rateLimit: z.object({ limit: z.number().nullable(), remaining: z.number(), resetAt: z.string().nullable() }).nullable(),
  }),
  circuitBreaker: z.object({
    state: z.enum(['CLOSED', 'OPEN', 'HALF_OPEN']),
    failureCount: z.number(),
    nextAttemptTime: z.string().nullable().describe('While open, when GitHub is tried again'),
    trips: z.number(),
  }),
};

function statsOf(storage: HybridStorage) {
  const stats = storage.getStats();
  const { source, circuitBreaker: breaker } = stats;
  const rateLimit = source.rateLimit;
  return {
    hits: stats.hits.memory + stats.hits.sqlite + stats.hits.redis,
    misses: stats.misses,
    hitRate: stats.hitRate,
    tiers: stats.tiers.map(({ tier, hits, misses, entries }) => ({ tier, hits, misses, entries })),
    github: {
      requests: source.requests,
      failures: source.failures,
      notFound: source.notFound,
      rejected: source.rejected,
      staleServed: source.staleServed,
      rateLimit:
        rateLimit === null
          ? null
          : {
              limit: rateLimit.limit,
              remaining: rateLimit.remaining,
              resetAt: rateLimit.resetAt === null ? null : rateLimit.resetAt.toISOString(),
            },
    },
    circuitBreaker: {
      state: breaker.state,
      failureCount: breaker.failureCount,
      nextAttemptTime: breaker.nextAttemptTime === null ? null : new Date(breaker.nextAttemptTime).toISOString(),
      trips: breaker.trips,
    },
  };
}
