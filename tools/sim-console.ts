/**
 * Fallback simulator console: one hosts/device-node device (lib/device on Node, file-backed NVS) serving the
 * provisioning console (PROTOCOL.md §6) on a loopback TCP port, one JSON object per line (any other line closes
 * the connection: hosts/sim/console-socket.ts). `iotkx sim` uses
 * it when the XS simulator (hosts/sim) is not available. `reboot` restarts the device from its storage file
 * (the TCP port stays); `factory-reset` wipes the file and restarts, so the next identity is a new one.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { startNodeDevice, type NodeDevice } from '../hosts/device-node/device.js';
import { syntheticSensor } from '../hosts/device-node/sensor.js';
import { toHex } from '../lib/bytes.js';
import { IotkxError } from '../lib/errors.js';
import { serveConsoleSocket } from '../hosts/sim/console-socket.js';

export const SIM_FIRMWARE = 'iotkx-node-sim/1';
const MAX_LINE = 4096;
const COMMANDS = ['identity', 'provision', 'status', 'factory-reset', 'reboot'];

export interface SimConsole {
  name: string;
  port: number;
  url: string;
  address(): string;
  stop(): Promise<void>;
}

export async function startSimConsole(opts: { dir: string; name: string; seed?: number; port?: number; maxSleepMs?: number }): Promise<SimConsole> {
  const boot = () => startNodeDevice({ dir: opts.dir, name: opts.name, sensor: syntheticSensor(opts.seed ?? 1), maxSleepMs: opts.maxSleepMs ?? 5000 });
  let dev: NodeDevice = boot();
  let restarting: Promise<void> | undefined;
  const restart = () => {
    restarting = (async () => {
      await dev.stop();
      dev = boot();
    })();
  };

  const handle = async (line: string): Promise<Record<string, unknown>> => {
    let req: Record<string, unknown>;
    try {
      req = JSON.parse(line);
    } catch {
      return { id: null, ok: false, error: 'bad-request', message: 'not JSON' };
    }
    if (req === null || typeof req !== 'object' || Array.isArray(req)) return { id: null, ok: false, error: 'bad-request', message: 'expected a JSON object' };
    const id = typeof req.id === 'number' || typeof req.id === 'string' ? req.id : null;
    if (typeof req.cmd !== 'string' || !COMMANDS.includes(req.cmd)) return { id, ok: false, error: 'unknown-command', message: `cmd must be one of ${COMMANDS.join(', ')}` };
    await restarting;
    try {
      const e = dev.device.engine;
      switch (req.cmd) {
        case 'identity':
          return { id, ok: true, address: dev.address, publicKey: toHex(e.publicKey), firmware: SIM_FIRMWARE, state: e.state };
        case 'provision':
          if (!('config' in req)) return { id, ok: false, error: 'bad-request', message: 'provision needs a config' };
          dev.provision(req.config);
          return { id, ok: true, state: e.state };
        case 'status': {
          const st = dev.status();
          return {
            id, ok: true, state: st.state, epoch: st.epoch, pendingEpoch: st.pendingEpoch, lastError: st.lastError,
            readingsQueued: st.readings.queued, relayReachable: st.relayReachable, readings: st.readings, lastReading: st.lastReading,
            keyVersion: st.keyVersion, txToday: st.txToday, lastAction: st.lastAction, tickError: st.tickError,
          };
        }
        case 'factory-reset':
          dev.device.factoryReset(req.confirm as string);
          restart();
          return { id, ok: true, wiped: true };
        default:
          restart();
          return { id, ok: true, rebooting: true };
      }
    } catch (err) {
      if (err instanceof IotkxError) return { id, ok: false, error: err.code, message: err.message };
      return { id, ok: false, error: 'internal-error', message: String((err as Error)?.message ?? err) };
    }
  };

  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    // One reply per line, in order; a line that is not a JSON object closes the connection (console-socket.ts).
    serveConsoleSocket(sock, async (line) => [JSON.stringify(await handle(line))], { maxLine: MAX_LINE });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    name: opts.name,
    port,
    url: `tcp://127.0.0.1:${port}`,
    address: () => dev.address,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await restarting;
      await dev.stop();
    },
  };
}
