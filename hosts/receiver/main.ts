// CLI entry of the receiver: `tsx hosts/receiver/main.ts [flags]`. Flags override environment variables;
// secrets come only from the environment or files (never flags: they would show in `ps`).
//   --rpc-url URL         IOTKX_RPC_URL              node the receiver trusts (§5.4)
//   --deployment PATH     IOTKX_DEPLOYMENT           deployment record (hosts/chain/deploy.ts), default .iotkx/deployment.json
//   --contract ADDR       IOTKX_CONTRACT             KeyExchange address (else from the deployment record)
//   --chain-id N          IOTKX_CHAIN_ID             (else from the record, else asked of the node)
//   --start-block N                                  first block to scan (else the record's deployment block, else 0)
//   --data-dir DIR        IOTKX_RECEIVER_DATA_DIR    default .iotkx/receiver (keys.json, receiver.db, db.key)
//   --key-file PATH       IOTKX_RECEIVER_KEY_FILE    default <data-dir>/keys.json
//   --db PATH / --db-key-file PATH
//   --host H              IOTKX_RECEIVER_HOST        default 127.0.0.1; any other needs IOTKX_RECEIVER_TOKEN
//   --port N              IOTKX_RECEIVER_PORT        default 8547
//   --relay-url URL       IOTKX_RELAY_URL            pull readings from this relay
//   --mqtt-url URL        IOTKX_MQTT_URL             publish every accepted reading to this MQTT broker (QoS 1)
//   --mqtt-topic-prefix P IOTKX_MQTT_TOPIC_PREFIX    default iotkx: topics <P>/<device>/readings
//   --confirmations N --min-ttl-blocks N --poll-ms N --max-accepts-per-hour N
//   --idle-depth0-after S  act at depth 0 once the node produced no block for S seconds (default 30; 0 = never)
//   --init-keys           create the key file if absent, print the address and E, exit
//   --rotate-key          publish a fresh encryption key (version + 1), exit
// Secrets: IOTKX_RECEIVER_KEY, IOTKX_RECEIVER_ENC_KEY, IOTKX_RECEIVER_DB_KEY, IOTKX_RECEIVER_TOKEN (README.md).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import type { Address } from 'viem';
import { toHex } from '../../lib/bytes.js';
import { addressHex } from '../../lib/address.js';
import { readDeployment } from '../chain/deploy.js';
import { initReceiverKeys } from './keys.js';
import { startReceiver } from './receiver.js';

const { values } = parseArgs({
  options: {
    'rpc-url': { type: 'string' }, deployment: { type: 'string' }, contract: { type: 'string' }, 'chain-id': { type: 'string' },
    'start-block': { type: 'string' }, 'data-dir': { type: 'string' }, 'key-file': { type: 'string' }, db: { type: 'string' },
    'db-key-file': { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, 'relay-url': { type: 'string' },
    'mqtt-url': { type: 'string' }, 'mqtt-topic-prefix': { type: 'string' },
    confirmations: { type: 'string' }, 'min-ttl-blocks': { type: 'string' }, 'poll-ms': { type: 'string' },
    'max-accepts-per-hour': { type: 'string' }, 'idle-depth0-after': { type: 'string' }, 'init-keys': { type: 'boolean' }, 'rotate-key': { type: 'boolean' },
    help: { type: 'boolean' },
  },
});

function int(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a non-negative integer`);
  return Number(v);
}

async function main(): Promise<void> {
  if (values.help) {
    console.log('usage: tsx hosts/receiver/main.ts [--rpc-url URL] [--deployment PATH] [--contract ADDR] [--data-dir DIR] [--host H] [--port N] [--relay-url URL] [--confirmations N] [--idle-depth0-after S] [--init-keys] [--rotate-key]; see hosts/receiver/README.md');
    return;
  }
  const env = process.env;
  const dataDir = values['data-dir'] ?? env.IOTKX_RECEIVER_DATA_DIR ?? '.iotkx/receiver';
  const keyFile = values['key-file'] ?? env.IOTKX_RECEIVER_KEY_FILE ?? join(dataDir, 'keys.json');
  if (values['init-keys']) {
    const k = initReceiverKeys(keyFile);
    console.log(JSON.stringify({ keyFile, address: addressHex(k.address), encKeys: k.encKeys.map((e) => ({ version: e.version, publicKey: toHex(e.publicKey) })) }, null, 2));
    return;
  }
  const depPath = values.deployment ?? env.IOTKX_DEPLOYMENT ?? '.iotkx/deployment.json';
  const dep = existsSync(depPath) ? readDeployment(depPath) : undefined;
  const rpcUrl = values['rpc-url'] ?? env.IOTKX_RPC_URL ?? dep?.rpcUrl;
  const contract = values.contract ?? env.IOTKX_CONTRACT ?? dep?.address;
  if (!rpcUrl || !contract) throw new Error('need --rpc-url and --contract (or a deployment record)');
  const mqttUrl = values['mqtt-url'] ?? env.IOTKX_MQTT_URL;
  const log = pino({ name: 'receiver', level: env.IOTKX_LOG_LEVEL ?? 'info' }, pino.destination(2));
  const rcv = await startReceiver({
    rpcUrl, contract: contract as Address,
    chainId: int(values['chain-id'] ?? env.IOTKX_CHAIN_ID, 'chain-id') ?? dep?.chainId,
    startBlock: BigInt(int(values['start-block'], 'start-block') ?? dep?.block ?? 0),
    dataDir, keyFile, dbPath: values.db, dbKeyFile: values['db-key-file'],
    http: {
      host: values.host ?? env.IOTKX_RECEIVER_HOST ?? '127.0.0.1',
      port: int(values.port ?? env.IOTKX_RECEIVER_PORT, 'port') ?? 8547,
    },
    relayUrl: values['relay-url'] ?? env.IOTKX_RELAY_URL,
    pollIntervalMs: values['rotate-key'] ? 0 : int(values['poll-ms'], 'poll-ms'),
    exchange: {
      ...(values.confirmations !== undefined ? { confirmations: int(values.confirmations, 'confirmations') } : {}),
      ...(values['min-ttl-blocks'] !== undefined ? { minRemainingBlocks: int(values['min-ttl-blocks'], 'min-ttl-blocks') } : {}),
      ...(values['idle-depth0-after'] !== undefined ? { idleDepthZeroMs: int(values['idle-depth0-after'], 'idle-depth0-after')! * 1000 } : {}),
      ...(values['max-accepts-per-hour'] !== undefined ? { acceptRate: { max: int(values['max-accepts-per-hour'], 'max-accepts-per-hour')!, windowMs: 3_600_000 } } : {}),
    },
    logger: (msg, extra) => log.info(extra ?? {}, msg),
    ...(mqttUrl && !values['rotate-key'] ? { mqtt: { url: mqttUrl, topicPrefix: values['mqtt-topic-prefix'] ?? env.IOTKX_MQTT_TOPIC_PREFIX } } : {}),
  });
  if (values['rotate-key']) {
    const v = await rcv.rotateEncryptionKey();
    console.log(JSON.stringify({ address: rcv.address, version: v }));
    await rcv.stop();
    return;
  }
  log.info({ url: rcv.url, address: rcv.address }, 'receiver running');
  const shutdown = () => void rcv.stop().then(() => process.exit(0));
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main().catch((e) => {
  console.error(`receiver: ${(e as Error).message}`);
  process.exit(1);
});
