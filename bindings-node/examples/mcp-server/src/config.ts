// The server's storage config, from the environment.
import type { HybridStorageConfig } from 'tierstack';

/**
 * Reads:
 * - `TIERSTACK_DB_PATH`: the SQLite file shared by every server process on
 *   the host (default: tierstack's, `<user cache dir>/tierstack/default.db`);
 * - `GITHUB_API_URL`, `GITHUB_RAW_URL`: GitHub's API and raw-file hosts
 *   (default `https://api.github.com`, `https://raw.githubusercontent.com`);
 * - `TIERSTACK_TTL`: seconds a fetched file stays fresh, in memory and in the
 *   file (default: tierstack's, 3600 in memory and 86400 in the file).
 *
 * The token is left to tierstack, which reads `GITHUB_PERSONAL_ACCESS_TOKEN`,
 * else `GITHUB_TOKEN`, and sends it to the API host only.
 */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): HybridStorageConfig {
  const config: HybridStorageConfig = { github: {} };
  const path = nonEmpty(env.TIERSTACK_DB_PATH);
  if (path !== undefined) config.sqlite = { path };
  const apiUrl = nonEmpty(env.GITHUB_API_URL);
  if (apiUrl !== undefined) config.github!.apiUrl = apiUrl;
  const rawUrl = nonEmpty(env.GITHUB_RAW_URL);
  if (rawUrl !== undefined) config.github!.rawUrl = rawUrl;
  const ttl = nonEmpty(env.TIERSTACK_TTL);
  if (ttl !== undefined) {
    const seconds = Number(ttl);
    if (!Number.isFinite(seconds) || seconds <= 0) {
      throw new Error(`TIERSTACK_TTL must be a positive number of seconds, got "${ttl}"`);
    }
    config.memory = { ttl: seconds };
    config.sqlite = { ...config.sqlite, ttl: seconds };
  }
  return config;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
