/**
 * CLI entry of the relay: `npx tsx hosts/relay/main.ts [flags]`. Every flag has an
 * environment variable; flags win. With --deployment, the upstream URL, chain id and
 * contract come from a deployment record (hosts/chain/deploy.ts writes one).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_LIMITS, DEFAULT_RETENTION, type RelayLimits, type RelayOptions } from './config.js';
import { DEFAULT_GROUP_COMMIT } from './group-commit.js';
import { startRelay } from './server.js';

const USAGE = `usage: tsx hosts/relay/main.ts [flags]
  --deployment <file>      read upstream, chainId and contract from a deployment record  (IOTKX_DEPLOYMENT)
  --upstream <url>         upstream JSON-RPC node                                          (IOTKX_UPSTREAM_URL)
  --chain-id <n>           the deployment's chain id                                       (IOTKX_CHAIN_ID)
  --contract <address>     the KeyExchange contract                                        (IOTKX_CONTRACT)
  --db <path>              SQLite file for envelopes (default relay.db)                    (IOTKX_RELAY_DB)
  --host <addr>            listen address (default 127.0.0.1)                              (IOTKX_RELAY_HOST)
  --port <n>               listen port (default 8545; 0 = any)                             (IOTKX_RELAY_PORT)
  --rate <per-sec>         per-client token rate, 0 disables rate limiting (default ${(DEFAULT_LIMITS.rateLimit as { ratePerSec: number }).ratePerSec})  (IOTKX_RELAY_RATE)
  --burst <n>              per-client bucket size (default ${(DEFAULT_LIMITS.rateLimit as { burst: number }).burst})                       (IOTKX_RELAY_BURST)
  --upstream-timeout <ms>  upstream deadline (default ${DEFAULT_LIMITS.upstreamTimeoutMs})                        (IOTKX_UPSTREAM_TIMEOUT_MS)
  --upstream-batch <n>     calls of one event-loop turn sent upstream as one batch of ≤ n; 1 = off (default ${DEFAULT_LIMITS.upstreamBatch})  (IOTKX_UPSTREAM_BATCH)
  --no-channel-check       store envelopes from any address, not only enrolled devices (the
                           check is on by default)                                         (IOTKX_REQUIRE_CHANNEL=0)
  --retain-days <n>        delete envelopes older than n days; 0 keeps them (default ${DEFAULT_RETENTION.maxAgeSec / 86_400})   (IOTKX_RELAY_RETAIN_DAYS)
  --max-per-device <n>     envelopes kept per device, further ones 507; 0 = no cap (default ${DEFAULT_RETENTION.maxPerDevice})  (IOTKX_RELAY_MAX_PER_DEVICE)
  --max-rows <n>           envelopes kept in all, further ones 507; 0 = no cap (default ${DEFAULT_RETENTION.maxRows})  (IOTKX_RELAY_MAX_ROWS)
  --commit-batch <n>       envelopes per group commit (one fsync) at most; 1 = a commit per POST (default ${DEFAULT_GROUP_COMMIT.maxBatch})  (IOTKX_RELAY_COMMIT_BATCH)
  --commit-wait <ms>       under concurrent load, longest an envelope waits for others before its commit; 0 = never wait (default ${DEFAULT_GROUP_COMMIT.maxWaitMs})  (IOTKX_RELAY_COMMIT_WAIT_MS)
  --log-level <level>      pino level (default info)                                       (LOG_LEVEL)`;

function fail(msg: string): never {
  console.error(`${msg}\n\n${USAGE}`);
  process.exit(2);
}

function int(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) < min) fail(`${name} must be an integer ≥ ${min}, got ${v}`);
  return Number(v);
}

function optionsFrom(argv: string[], env: NodeJS.ProcessEnv): RelayOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      deployment: { type: 'string' }, upstream: { type: 'string' }, 'chain-id': { type: 'string' }, contract: { type: 'string' },
      db: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, rate: { type: 'string' }, burst: { type: 'string' },
      'upstream-timeout': { type: 'string' }, 'upstream-batch': { type: 'string' }, 'require-channel': { type: 'boolean' }, 'no-channel-check': { type: 'boolean' },
      'retain-days': { type: 'string' }, 'max-per-device': { type: 'string' }, 'max-rows': { type: 'string' },
      'commit-batch': { type: 'string' }, 'commit-wait': { type: 'string' }, 'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  let record: { rpcUrl?: string; chainId?: number; address?: string; block?: number } = {};
  const depPath = values.deployment ?? env.IOTKX_DEPLOYMENT;
  if (depPath) {
    try {
      record = JSON.parse(readFileSync(depPath, 'utf8'));
    } catch (e) {
      fail(`cannot read deployment record ${depPath}: ${(e as Error).message}`);
    }
  }
  const upstreamUrl = values.upstream ?? env.IOTKX_UPSTREAM_URL ?? record.rpcUrl;
  const chainId = int('--chain-id', values['chain-id'] ?? env.IOTKX_CHAIN_ID, 1) ?? record.chainId;
  const contract = values.contract ?? env.IOTKX_CONTRACT ?? record.address;
  if (!upstreamUrl) fail('no upstream URL');
  if (chainId === undefined) fail('no chain id');
  if (!contract) fail('no contract address');
  const limits: Partial<RelayLimits> = {};
  const rate = int('--rate', values.rate ?? env.IOTKX_RELAY_RATE, 0);
  const burst = int('--burst', values.burst ?? env.IOTKX_RELAY_BURST, 1);
  if (rate === 0) limits.rateLimit = false;
  else if (rate !== undefined || burst !== undefined) {
    const d = DEFAULT_LIMITS.rateLimit as Exclude<RelayLimits['rateLimit'], false>;
    limits.rateLimit = { ...d, ratePerSec: rate ?? d.ratePerSec, burst: burst ?? d.burst };
  }
  const timeout = int('--upstream-timeout', values['upstream-timeout'] ?? env.IOTKX_UPSTREAM_TIMEOUT_MS, 1);
  if (timeout !== undefined) limits.upstreamTimeoutMs = timeout;
  const batch = int('--upstream-batch', values['upstream-batch'] ?? env.IOTKX_UPSTREAM_BATCH, 1);
  if (batch !== undefined) limits.upstreamBatch = batch;
  // On by default; --require-channel (the former opt-in) is still accepted.
  const requireChannel = values['no-channel-check'] ? false : values['require-channel'] ? true : env.IOTKX_REQUIRE_CHANNEL !== '0';
  const retention: RelayOptions['retention'] = {};
  const days = int('--retain-days', values['retain-days'] ?? env.IOTKX_RELAY_RETAIN_DAYS, 0);
  if (days !== undefined) retention.maxAgeSec = days * 86_400;
  const perDevice = int('--max-per-device', values['max-per-device'] ?? env.IOTKX_RELAY_MAX_PER_DEVICE, 0);
  if (perDevice !== undefined) retention.maxPerDevice = perDevice;
  const rows = int('--max-rows', values['max-rows'] ?? env.IOTKX_RELAY_MAX_ROWS, 0);
  if (rows !== undefined) retention.maxRows = rows;
  const commit: RelayOptions['commit'] = {};
  const commitBatch = int('--commit-batch', values['commit-batch'] ?? env.IOTKX_RELAY_COMMIT_BATCH, 1);
  if (commitBatch !== undefined) commit.maxBatch = commitBatch;
  const commitWait = int('--commit-wait', values['commit-wait'] ?? env.IOTKX_RELAY_COMMIT_WAIT_MS, 0);
  if (commitWait !== undefined) commit.maxWaitMs = commitWait;
  return {
    upstreamUrl,
    chainId,
    contract,
    dbPath: values.db ?? env.IOTKX_RELAY_DB ?? 'relay.db',
    host: values.host ?? env.IOTKX_RELAY_HOST ?? '127.0.0.1',
    port: int('--port', values.port ?? env.IOTKX_RELAY_PORT, 0) ?? 8545,
    limits,
    requireChannel: requireChannel ? { fromBlock: BigInt(record.block ?? 0) } : false,
    retention,
    commit,
    logLevel: values['log-level'] ?? env.LOG_LEVEL ?? 'info',
    processMetrics: true,
  };
}

async function main(): Promise<void> {
  let opts: RelayOptions;
  try {
    opts = optionsFrom(process.argv.slice(2), process.env);
  } catch (e) {
    fail((e as Error).message);
  }
  const relay = await startRelay(opts);
  const shutdown = () => void relay.stop().then(() => process.exit(0));
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main().catch((e) => {
  console.error(`relay failed to start: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
