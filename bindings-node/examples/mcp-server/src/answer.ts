// Turns what the storage says into MCP tool results: the value, a line
// telling where it came from and how old it is (and, for a stale copy, why),
// and tool errors (`isError`) with a message a model can act on.
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { CircuitBreakerStatus, HybridStorage, LookupResult } from 'tierstack';
import { z } from 'zod';

/** What every answer read from the storage reports beside its content. */
export const provenance = {
  key: z.string().describe('The cache key that was read'),
  tier: z.enum(['memory', 'sqlite', 'source']).describe('memory, the shared SQLite file, or GitHub (source)'),
  stale: z.boolean().describe('Whether the answer is an expired copy served because GitHub is unavailable'),
  ageSeconds: z.number().describe('Seconds since the answer was fetched from GitHub'),
};

/** One thing the server serves: its cache key and how to name it to a person. */
export interface Item {
  key: string;
  /** E.g. `component "button" (react)`. */
  what: string;
}

/**
 * Reads `item` and answers with `render(value)` as text, the provenance line
 * and `structured(value)` merged into the provenance. A miss, an invalid
 * name, or GitHub failing with no copy kept become tool errors.
 */
export async function answer<T>(
  storage: HybridStorage,
  item: Item,
  check: (value: unknown) => value is T,
  render: (value: T) => string,
  structured: (value: T) => Record<string, unknown> = () => ({}),
): Promise<CallToolResult> {
  let found: LookupResult | undefined;
  try {
    found = await storage.lookup(item.key);
  } catch (err) {
    return failure(storage, item, err);
  }
  if (found === undefined) return toolError(`Not found: ${item.what} does not exist on GitHub.`);
  const { value, tier, stale, age } = found;
  if (!check(value)) return toolError(`The cache holds an unexpected value for ${item.what} (key ${item.key}).`);
  return {
    content: [
      { type: 'text', text: render(value) },
      { type: 'text', text: provenanceLine(found, breaker(storage)) },
    ],
    structuredContent: { key: item.key, tier, stale, ageSeconds: age, ...structured(value) },
  };
}

/**
 * `(fresh: fetched from GitHub just now)`, `(fresh: served from memory, 3 s old)`,
 * `(stale: served from the cache, 42 s old; GitHub is unavailable)`.
 */
export function provenanceLine(found: LookupResult, status: CircuitBreakerStatus | undefined): string {
  const age = `${Math.floor(found.age)} s old`;
  if (found.stale) {
    let why = 'GitHub is unavailable';
    if (status?.state === 'OPEN' && status.nextAttemptTime !== null) {
      why += ` (circuit breaker open until ${new Date(status.nextAttemptTime).toISOString()})`;
    }
    return `(stale: served from the cache, ${age}; ${why})`;
  }
  switch (found.tier) {
    case 'source':
      return '(fresh: fetched from GitHub just now)';
    case 'memory':
      return `(fresh: served from memory, ${age})`;
    case 'sqlite':
      return `(fresh: served from the cache file, ${age})`;
  }
}

/** The tool error for a read that threw. */
function failure(storage: HybridStorage, item: Item, err: unknown): CallToolResult {
  const code = (err as { code?: unknown })?.code;
  const message = err instanceof Error ? err.message : String(err);
  switch (code) {
    case 'invalid_key':
      return toolError(`Invalid name for ${item.what}: ${message}`);
    case 'source_unavailable': {
      const status = breaker(storage);
      const until =
        status?.nextAttemptTime != null ? ` until ${new Date(status.nextAttemptTime).toISOString()}` : '';
      return toolError(
        `GitHub is unavailable (circuit breaker open${until}) and no copy of ${item.what} is cached. Try again later.`,
      );
    }
    case 'source':
    case 'timeout':
      return toolError(`GitHub failed to serve ${item.what} and no copy is cached: ${message}`);
    default:
      return toolError(`Reading ${item.what} failed (${String(code ?? 'error')}): ${message}`);
  }
}

function breaker(storage: HybridStorage): CircuitBreakerStatus | undefined {
  try {
    return storage.getCircuitBreakerStatus();
  } catch {
    return undefined;
  }
}

export function toolError(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

export const isString = (value: unknown): value is string => typeof value === 'string';
export const isNames = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((name) => typeof name === 'string');
