import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { ReceiverMetrics } from '../../hosts/receiver/metrics.js';
import { redactUrl, startMqttPublisher, type MqttPublisher } from '../../hosts/receiver/mqtt.js';
import { pad, Store } from '../../hosts/receiver/store.js';
import { mosquittoBinary, startBroker, type Broker } from '../helpers/mosquitto.js';
import { until } from '../helpers/until.js';

// The receiver's MQTT push against a real mosquitto: every accepted reading reaches a subscriber, at least once,
// through a broker restart and a receiver restart, with no reading lost and none duplicated when nothing crashed.
const HAVE_BROKER = mosquittoBinary() !== undefined;
if (!HAVE_BROKER) console.warn('mosquitto not installed (apt-get install mosquitto): MQTT tests skipped');
const maybe = HAVE_BROKER ? describe : describe.skip;

const RECEIVER = '0x00000000000000000000000000000000000000aa';
const DEVICES = ['0x1111111111111111111111111111111111111111', '0x2222222222222222222222222222222222222222'];

function openStore(path: string) {
  return new Store(path, new Uint8Array(32).fill(7), 'test-binding');
}

let nextSeq = 1n;
function addReadings(store: Store, n: number): string[] {
  const keys: string[] = [];
  const ins = store.db.prepare('INSERT INTO readings (device, epoch, seq, values_json, t, skewed, received_ms) VALUES (?, ?, ?, ?, ?, 0, ?)');
  for (let i = 0; i < n; i++) {
    const device = DEVICES[i % 2];
    const seq = nextSeq++;
    ins.run(device, pad(1n), pad(seq), JSON.stringify({ t: 1764000000 + Number(seq), temp: 20 + Number(seq) / 10 }), 1764000000, Date.UTC(2026, 11, 3, 12, 0, Number(seq % 60n)));
    keys.push(`${device}:1:${seq}`);
  }
  return keys;
}

interface Received { key: string; topic: string; body: any }

async function subscriber(url: string): Promise<{ client: MqttClient; got: Received[] }> {
  const got: Received[] = [];
  // A persistent session (clean: false) with a fixed id: the broker keeps QoS 1 messages for it while it is away.
  const client = mqtt.connect(url, { clientId: `sub-${randomBytes(4).toString('hex')}`, clean: false, reconnectPeriod: 200 });
  client.on('message', (topic, payload) => {
    const body = JSON.parse(payload.toString());
    got.push({ key: `${body.device}:${body.epoch}:${body.seq}`, topic, body });
  });
  await new Promise<void>((resolve, reject) => { client.once('connect', () => resolve()); client.once('error', reject); });
  await client.subscribeAsync('iotkx/+/readings', { qos: 1 });
  return { client, got };
}

maybe('MQTT push (real mosquitto)', () => {
  jest.setTimeout(90_000);
  let broker: Broker;
  let store: Store;
  let dbPath: string;
  const publishers: MqttPublisher[] = [];
  const clients: MqttClient[] = [];
  const start = (s: Store) => {
    const p = startMqttPublisher(s, RECEIVER, new ReceiverMetrics(), { url: broker.url, pollMs: 100 }, () => {});
    publishers.push(p);
    return p;
  };

  beforeAll(async () => {
    broker = await startBroker();
    dbPath = join(mkdtempSync(join(tmpdir(), 'iotkx-mqtt-db-')), 'receiver.db');
    store = openStore(dbPath);
  });
  afterAll(async () => {
    for (const p of publishers) await p.stop().catch(() => undefined);
    for (const c of clients) await c.endAsync(true).catch(() => undefined);
    await broker?.stop();
    store?.close();
  });

  test('every reading arrives once, with topic per device and the §9 payload; broker restart loses nothing', async () => {
    const sub = await subscriber(broker.url);
    clients.push(sub.client);
    const first = addReadings(store, 50);
    const pub = start(store);
    await until('50 readings at the subscriber', () => sub.got.length >= 50, 30_000);
    expect(sub.got.map((r) => r.key).sort()).toEqual([...first].sort());
    const one = sub.got.find((r) => r.key === first[0])!;
    expect(one.topic).toBe(`iotkx/${DEVICES[0]}/readings`);
    expect(one.body).toEqual({ device: DEVICES[0], epoch: '1', seq: first[0].split(':')[2], values: { t: 1764000001, temp: 20.1 }, receivedAt: '2026-12-03T12:00:01.000Z' });

    // The broker goes away; readings keep coming; nothing is acknowledged, so the cursor stays.
    await broker.stop();
    const cursorBefore = pub.cursor();
    const during = addReadings(store, 30);
    await new Promise((r) => setTimeout(r, 1500));
    expect(pub.cursor()).toBe(cursorBefore);
    await broker.start();
    const after = addReadings(store, 20);
    const want = [...first, ...during, ...after];
    await until('every reading after the broker restart', () => want.every((k) => sub.got.some((r) => r.key === k)), 60_000);
    await until('cursor at the end', () => pub.cursor() === (store.db.prepare('SELECT max(rowid) AS m FROM readings').get() as any).m, 10_000);
  });

  test('a receiver restart resumes from its cursor: new readings only, nothing lost, nothing sent twice', async () => {
    const pub = publishers.at(-1)!;
    await pub.stop();
    store.close();
    const sub = await subscriber(broker.url);
    clients.push(sub.client);

    store = openStore(dbPath);
    const fresh = addReadings(store, 25);
    start(store);
    await until('the 25 new readings', () => fresh.every((k) => sub.got.some((r) => r.key === k)), 30_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(sub.got.map((r) => r.key).sort()).toEqual([...fresh].sort()); // nothing from before the restart again
  });

  test('credentials never reach the logs', () => {
    expect(redactUrl('mqtts://alice:s3cret@broker.example:8883')).not.toContain('s3cret');
    expect(redactUrl('mqtt://127.0.0.1:1883')).toBe('mqtt://127.0.0.1:1883');
  });
});
