// One iotkx HTTP host in a process of its own, as `npm start` runs it, so a test sees a crash as an exit:
// `tsx test/servers/host-process.ts <relay|receiver> '<options json>'` prints `{"url": ...}` once listening.
// The receiver's HTTP server runs over a real SQLite store (no chain needed: §9's routes only read it).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startRelay } from '../../hosts/relay/server.js';
import { startHttp } from '../../hosts/receiver/http.js';
import { Store } from '../../hosts/receiver/store.js';
import { ReceiverMetrics } from '../../hosts/receiver/metrics.js';

// The test holds our stdin open; when it goes (the test process ended, even by a crash), so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();

const [kind, json] = process.argv.slice(2);
const o = JSON.parse(json ?? '{}');
const dir = mkdtempSync(join(tmpdir(), `iotkx-${kind}-`));

async function main(): Promise<string> {
  if (kind === 'relay') {
    const relay = await startRelay({
      upstreamUrl: o.upstreamUrl ?? 'http://127.0.0.1:9', chainId: 31337, contract: '0x5fbdb2315678afecb367f032d93f642f64180aa3',
      dbPath: join(dir, 'relay.db'), logLevel: 'silent', host: o.host, limits: o.limits,
    });
    return relay.url;
  }
  if (kind === 'receiver') {
    const store = new Store(join(dir, 'receiver.db'), new Uint8Array(randomBytes(32)), 'test');
    const { url } = await startHttp({ host: o.host ?? '127.0.0.1', port: 0, token: o.token, limits: o.limits }, store, new ReceiverMetrics(), () => undefined);
    return url;
  }
  throw new Error(`unknown host kind ${kind}`);
}

main().then((url) => process.stdout.write(`${JSON.stringify({ url })}\n`), (e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(2);
});
