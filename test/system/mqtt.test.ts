import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { mosquittoBinary, startBroker } from '../helpers/mosquitto.js';
import { until } from '../helpers/until.js';

// `npm start -- --mqtt URL` as a provider uses it: the simulated devices' readings, decrypted by the receiver,
// arrive at a subscriber of a real mosquitto, and match what the receiver's §9 API serves.
const ROOT = path.resolve(__dirname, '../..');
const HAVE_BROKER = mosquittoBinary() !== undefined;
if (!HAVE_BROKER) console.warn('mosquitto not installed (apt-get install mosquitto): npm start --mqtt test skipped');
(HAVE_BROKER ? test : test.skip)('npm start --mqtt: decrypted readings reach an MQTT subscriber', async () => {
  const broker = await startBroker();
  const sub = mqtt.connect(broker.url, { clientId: 'provider-app', clean: false });
  const got: { topic: string; body: any }[] = [];
  sub.on('message', (topic, payload) => got.push({ topic, body: JSON.parse(payload.toString()) }));
  await new Promise<void>((r) => sub.once('connect', () => r()));
  await sub.subscribeAsync('iotkx/#', { qos: 1 });
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-mqtt-start-')), 'run');
  const child = spawn(path.join(ROOT, 'node_modules/.bin/tsx'), ['hosts/start.ts', '--devices', '1', '--interval', '1', '--data-dir', dir, '--mqtt', broker.url],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((r) => child.once('exit', r));
  try {
    const info = await until('system.json', () => {
      const f = path.join(dir, 'system.json');
      return fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, 'utf8')) : undefined;
    }, 90_000);
    const device = (info.devices[0] as string).toLowerCase();
    await until('three readings over MQTT', () => got.length >= 3, 90_000);
    for (const m of got) {
      expect(m.topic).toBe(`iotkx/${device}/readings`);
      expect(m.body.device).toBe(device);
      expect(typeof m.body.values.temp).toBe('number');
    }
    const api = (await (await fetch(`${info.receiverUrl}/v1/devices/${device}/readings`)).json()) as any;
    for (const m of got) {
      expect(api.readings).toContainEqual({ epoch: m.body.epoch, seq: m.body.seq, values: m.body.values, receivedAt: m.body.receivedAt });
    }
    expect(out).toContain('publishing readings to MQTT');
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- npm start ---\n${out}`);
  } finally {
    child.kill('SIGINT');
    await exited;
    await sub.endAsync(true);
    await broker.stop();
  }
}, 150_000);
