/**
 * A real MQTT broker for tests: Debian's mosquitto (`.ci/run` installs it) on a free loopback port, with
 * persistence in its own directory so a graceful restart keeps what it had accepted. `mosquittoBinary()` is
 * undefined when it is not installed: the tests that need it then skip and say why.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../hosts/chain/anvil.js';
import { until } from './until.js';

export function mosquittoBinary(): string | undefined {
  return ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto'].find((p) => existsSync(p));
}

export interface Broker {
  url: string;
  port: number;
  /** SIGTERM (mosquitto saves its persistence file on the way out). */
  stop(): Promise<void>;
  /** Starts it again on the same port and data directory. */
  start(): Promise<void>;
}

const portOpen = (port: number) => new Promise<boolean>((resolve) => {
  const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
  s.on('error', () => resolve(false));
});

export async function startBroker(): Promise<Broker> {
  const bin = mosquittoBinary();
  if (!bin) throw new Error('mosquitto is not installed (apt-get install mosquitto)');
  const dir = mkdtempSync(join(tmpdir(), 'iotkx-mqtt-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, [
    `listener ${port} 127.0.0.1`, 'allow_anonymous true',
    'persistence true', `persistence_location ${dir}/`, 'log_dest none',
  ].join('\n') + '\n');
  let child: ChildProcess | undefined;
  const broker: Broker = {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    async start() {
      child = spawn(bin, ['-c', conf], { stdio: 'ignore' });
      await until(`mosquitto on ${port}`, () => portOpen(port), 15_000, 50);
    },
    async stop() {
      const c = child;
      if (!c || c.exitCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await exited;
    },
  };
  await broker.start();
  return broker;
}
