#!/usr/bin/env node
// An MCP server (stdio) serving shadcn/ui component source from GitHub
// through tierstack: memory, then a SQLite file shared by every server
// process on the host, then GitHub behind a circuit breaker, with expired
// copies served (and marked stale) when GitHub is unavailable.
// Configuration: see config.ts.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { HybridStorage } from 'tierstack';

import { configFromEnv } from './config.js';
import { registerTools } from './tools.js';

const storage = new HybridStorage(configFromEnv());
const server = new McpServer({ name: 'tierstack-mcp-server', version: '0.1.0' });
registerTools(server, storage);

let closing: Promise<void> | undefined;
/** Closes the server and the storage (its pending writes reach the file), then exits. */
function shutdown(): Promise<void> {
  closing ??= (async () => {
    let code = 0;
    try {
      await server.close();
      await storage.dispose();
    } catch (err) {
      console.error('tierstack-mcp-server: shutting down failed:', err);
      code = 1;
    }
    process.exit(code);
  })();
  return closing;
}

// The client ends the session by closing our stdin.
process.stdin.on('end', shutdown);
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);

await server.connect(new StdioServerTransport());
