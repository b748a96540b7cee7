/**
 * `npm start`: the whole system on this machine (embedded anvil, KeyExchange, receiver,
 * relay, simulated devices), a live summary every few seconds, clean stop on Ctrl-C.
 * Flags (or environment): --devices N (IOTKX_DEVICES, 3), --interval S (IOTKX_INTERVAL, 5),
 * --rpc-url URL (IOTKX_RPC_URL: use that node instead of anvil, with IOTKX_DEPLOYER_KEY),
 * --block-time S (1; 0 = automine), --data-dir DIR (.iotkx/run; only a directory iotkx made, one system at a
 * time), --keep (IOTKX_KEEP=1: resume the previous run in DIR instead of wiping it), --relay-port N,
 * --relay-host ADDR (127.0.0.1; 0.0.0.0 for boards on the LAN), --receiver-port N, --mqtt URL (IOTKX_MQTT_URL:
 * the receiver publishes every accepted reading there), --confirmations N (receiver depth: 2, 0 on an automine
 * embedded anvil), --idle-depth0-after S (30; the receiver acts at depth 0 once the node produced no block
 * for S seconds; 0 = never).
 */
import { parseArgs } from 'node:util';
import type { Hex } from 'viem';
import { StartAborted, startSystem } from './system.js';

const HELP = `usage: npm start -- [flags]        (note the -- : npm passes what follows it to iotkx)

  --devices N            simulated devices to pair and run (IOTKX_DEVICES, default 3; 0: pair your own)
  --interval S           seconds between readings (IOTKX_INTERVAL, default 5)
  --block-time S         seconds per block of the embedded anvil (default 1; 0: a block per transaction)
  --data-dir DIR         where the run keeps its files (IOTKX_DATA_DIR, default .iotkx/run); only a directory
                         iotkx made or an empty one, one system at a time; wiped at start unless --keep
  --keep                 resume the previous run in DIR: chain, contract, receiver, relay, devices (IOTKX_KEEP=1)
  --rpc-url URL          use this node instead of anvil (IOTKX_RPC_URL; needs IOTKX_DEPLOYER_KEY, a funded key)
  --relay-port N         relay port (default: a free one; --keep reuses the previous)
  --relay-host ADDR      relay interface (IOTKX_RELAY_HOST, default 127.0.0.1; 0.0.0.0 for boards on the LAN)
  --receiver-port N      receiver API and dashboard port (default: a free one)
  --mqtt URL             the receiver publishes every accepted reading to this broker (IOTKX_MQTT_URL)
  --confirmations N      blocks the receiver waits before acting (default 2; 0 on an automine anvil)
  --idle-depth0-after S  act at depth 0 once the node made no block for S seconds (default 30; 0 = never)
  --help                 this text

Join file for the CLI and other programs: <data dir>/system.json. Ctrl-C stops everything.`;

let values: Record<string, string | boolean | undefined>;
try {
  ({ values } = parseArgs({
    options: {
      devices: { type: 'string' }, interval: { type: 'string' }, 'rpc-url': { type: 'string' },
      'block-time': { type: 'string' }, 'data-dir': { type: 'string' }, 'relay-port': { type: 'string' }, 'relay-host': { type: 'string' },
      'receiver-port': { type: 'string' }, keep: { type: 'boolean' }, mqtt: { type: 'string' },
      confirmations: { type: 'string' }, 'idle-depth0-after': { type: 'string' }, help: { type: 'boolean' },
    },
  }));
} catch (e) {
  // Most often `npm start --devices 2` (npm keeps --devices for itself and passes only "2").
  console.error(`npm start: ${(e as Error).message}\n  flags go after --, e.g. npm start -- --devices 2 (npm start -- --help lists them)`);
  process.exit(2);
}
if (values.help) {
  console.log(HELP);
  process.exit(0);
}
const str = (v: string | boolean | undefined) => (typeof v === 'string' ? v : undefined);
const env = process.env;
const int = (v: string | undefined, fallback: number, name: string) => {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) { console.error(`--${name} must be a whole number, not ${JSON.stringify(v)}`); process.exit(2); }
  return n;
};

// Ctrl-C while the system is still starting must not leave services half up (anvil, xsnap workers, the data-dir
// lock): abort start-up, which stops what is up already (a terminal's SIGINT may have killed some of it).
const startup = new AbortController();
const early = () => { console.log('\nCtrl-C: stopping what has started…'); startup.abort(); };
process.on('SIGINT', early);
process.on('SIGTERM', early);

const system = await startSystem({
  dataDir: str(values['data-dir']) ?? env.IOTKX_DATA_DIR ?? '.iotkx/run',
  keep: (values.keep as boolean | undefined) ?? ['1', 'true', 'yes'].includes(String(env.IOTKX_KEEP ?? '').toLowerCase()),
  devices: int(str(values.devices) ?? env.IOTKX_DEVICES, 3, 'devices'),
  intervalSec: int(str(values.interval) ?? env.IOTKX_INTERVAL, 5, 'interval'),
  rpcUrl: str(values['rpc-url']) ?? env.IOTKX_RPC_URL,
  deployerKey: env.IOTKX_DEPLOYER_KEY as Hex | undefined,
  blockTime: int(str(values['block-time']), 1, 'block-time'),
  offerTtlBlocks: 60,
  relayPort: values['relay-port'] ? int(str(values['relay-port']), 0, 'relay-port') : undefined,
  relayHost: str(values['relay-host']) ?? env.IOTKX_RELAY_HOST,
  receiverPort: values['receiver-port'] ? int(str(values['receiver-port']), 0, 'receiver-port') : undefined,
  mqttUrl: str(values.mqtt) ?? env.IOTKX_MQTT_URL,
  confirmations: values.confirmations !== undefined ? int(str(values.confirmations), 2, 'confirmations') : undefined,
  idleDepthZeroMs: values['idle-depth0-after'] !== undefined ? int(str(values['idle-depth0-after']), 30, 'idle-depth0-after') * 1000 : undefined,
  signal: startup.signal,
  log: (line) => console.log(line),
  receiverLog: (msg, extra) => { if (/depth|reorg|failed/.test(msg)) console.log(`receiver: ${msg}${extra ? ` ${JSON.stringify(extra)}` : ''}`); },
}).catch((e: Error) => {
  if (e instanceof StartAborted) {
    console.log('stopped.');
    process.exit(0);
  }
  console.error(`iotkx: could not start: ${e.message}`);
  process.exit(1);
});

console.log(`\nrunning. Join info for other programs: ${system.infoFile}`);
console.log(JSON.stringify(system.info, null, 2));
console.log(`dashboard: ${system.info.receiverUrl}/`);
console.log(`decrypted readings: curl ${system.info.receiverUrl}/v1/devices/<address>/readings\nCtrl-C stops everything.\n`);

const summary = setInterval(async () => {
  try {
    const devices = (await (await fetch(`${system.info.receiverUrl}/v1/devices`)).json()) as any[];
    if (devices.length === 0) {
      console.log(`[${new Date().toISOString().slice(11, 19)}] no devices yet: \`npx iotkx sim\` then \`npx iotkx pair …\` ` +
        `(the command \`sim\` prints); dashboard: ${system.info.receiverUrl}/`);
      return;
    }
    const lines = devices.map((d) => `  ${d.device}  ${String(d.state).padEnd(8)} epoch ${d.epoch ?? '-'}  readings ${d.readings}  gaps ${d.gaps}`);
    let last = '';
    for (const d of devices) {
      if (Number(d.readings) === 0) continue;
      const page = (await (await fetch(`${system.info.receiverUrl}/v1/devices/${d.device}/readings?limit=1000`)).json()) as any;
      const r = page.readings.at(-1);
      if (r) last = `  latest from ${d.device.slice(0, 10)}…: ${JSON.stringify(r.values)} (epoch ${r.epoch}, seq ${r.seq})`;
    }
    const chain = ((await (await fetch(`${system.info.receiverUrl}/healthz`)).json()) as any).chain;
    const why = chain?.reason ? `\n  receiver: ${chain.reason}` : '';
    console.log(`[${new Date().toISOString().slice(11, 19)}] receiver view (dashboard ${system.info.receiverUrl}/):\n${lines.join('\n')}${last ? `\n${last}` : ''}${why}`);
  } catch (e) {
    console.log(`summary unavailable: ${(e as Error).message}`);
  }
}, 5000);

let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  clearInterval(summary);
  console.log('\nstopping…');
  // A service that does not stop (a wedged worker) must not keep the terminal: give up after 20 s and say so.
  const done = await Promise.race([system.stop().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 20_000).unref())]);
  console.log(done ? 'stopped.' : 'some services did not stop within 20 s; exiting anyway (the next start takes over the lock)');
  process.exit(done ? 0 : 1);
};
process.off('SIGINT', early);
process.off('SIGTERM', early);
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
if (startup.signal.aborted) void shutdown();
