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
import { startSystem } from './system.js';

const { values } = parseArgs({
  options: {
    devices: { type: 'string' }, interval: { type: 'string' }, 'rpc-url': { type: 'string' },
    'block-time': { type: 'string' }, 'data-dir': { type: 'string' }, 'relay-port': { type: 'string' }, 'relay-host': { type: 'string' },
    'receiver-port': { type: 'string' }, keep: { type: 'boolean' }, mqtt: { type: 'string' },
    confirmations: { type: 'string' }, 'idle-depth0-after': { type: 'string' }, help: { type: 'boolean' },
  },
});
if (values.help) {
  console.log('usage: npm start -- [--devices N] [--interval S] [--rpc-url URL] [--block-time S] [--data-dir DIR] [--keep] [--relay-port N] [--relay-host ADDR] [--receiver-port N] [--mqtt URL] [--confirmations N] [--idle-depth0-after S]');
  process.exit(0);
}
const env = process.env;
const int = (v: string | undefined, fallback: number, name: string) => {
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) { console.error(`--${name} must be a whole number, not ${JSON.stringify(v)}`); process.exit(2); }
  return n;
};

// Ctrl-C while the system is still starting must not kill the process with services half up (anvil, xsnap
// workers, the data-dir lock): note it, let start-up finish or fail, then stop cleanly.
let interrupted = false;
const early = () => { interrupted = true; console.log('\nCtrl-C: stopping once start-up is done…'); };
process.on('SIGINT', early);
process.on('SIGTERM', early);

const system = await startSystem({
  dataDir: values['data-dir'] ?? env.IOTKX_DATA_DIR ?? '.iotkx/run',
  keep: values.keep ?? ['1', 'true', 'yes'].includes(String(env.IOTKX_KEEP ?? '').toLowerCase()),
  devices: int(values.devices ?? env.IOTKX_DEVICES, 3, 'devices'),
  intervalSec: int(values.interval ?? env.IOTKX_INTERVAL, 5, 'interval'),
  rpcUrl: values['rpc-url'] ?? env.IOTKX_RPC_URL,
  deployerKey: env.IOTKX_DEPLOYER_KEY as Hex | undefined,
  blockTime: int(values['block-time'], 1, 'block-time'),
  offerTtlBlocks: 60,
  relayPort: values['relay-port'] ? int(values['relay-port'], 0, 'relay-port') : undefined,
  relayHost: values['relay-host'] ?? env.IOTKX_RELAY_HOST,
  receiverPort: values['receiver-port'] ? int(values['receiver-port'], 0, 'receiver-port') : undefined,
  mqttUrl: values.mqtt ?? env.IOTKX_MQTT_URL,
  confirmations: values.confirmations !== undefined ? int(values.confirmations, 2, 'confirmations') : undefined,
  idleDepthZeroMs: values['idle-depth0-after'] !== undefined ? int(values['idle-depth0-after'], 30, 'idle-depth0-after') * 1000 : undefined,
  log: (line) => console.log(line),
  receiverLog: (msg, extra) => { if (/depth|reorg|failed/.test(msg)) console.log(`receiver: ${msg}${extra ? ` ${JSON.stringify(extra)}` : ''}`); },
}).catch((e: Error) => {
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
  await system.stop();
  console.log('stopped.');
  process.exit(0);
};
process.off('SIGINT', early);
process.off('SIGTERM', early);
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
if (interrupted) void shutdown();
