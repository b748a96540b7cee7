import '../helpers/node-random.js';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { FileStorage, NVS_ENTRIES } from '../../hosts/device-node/storage.js';
import { nodeTransport } from '../../hosts/device-node/transport.js';
import { syntheticSensor } from '../../hosts/device-node/sensor.js';
import { startFleet } from '../../hosts/device-node/device.js';

const code = (c: string) => expect.objectContaining({ code: c });

test('FileStorage: survives a reopen, enforces NVS key/value/partition limits, leaves no temp file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'iotkx-nvs-'));
  const s = new FileStorage(join(dir, 'd.json'));
  s.set('chan', Uint8Array.of(1, 2, 3));
  expect(() => s.set('a'.repeat(16), Uint8Array.of(1))).toThrow(code('storage-key'));
  expect(() => s.set('big', new Uint8Array(4001))).toThrow(code('storage-value'));
  let i = 0;
  expect(() => { for (; i < 100; i++) s.set(`k${i}`, new Uint8Array(4000)); }).toThrow(code('storage-full'));
  expect(i).toBe(Math.floor((NVS_ENTRIES - 5) / 127)); // 127 entries a 4000-B blob
  const again = new FileStorage(join(dir, 'd.json'));
  expect(again.get('chan')).toEqual(Uint8Array.of(1, 2, 3));
  again.delete('chan');
  expect(new FileStorage(join(dir, 'd.json')).get('chan')).toBeUndefined();
  expect(readdirSync(dir)).toEqual(['d.json']);
});

describe('nodeTransport', () => {
  let server: Server;
  let url: string;
  const seen: Array<{ type?: string; len: number }> = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        seen.push({ type: req.headers['content-type'], len: Buffer.concat(chunks).length });
        const n = Number(new URL(req.url!, 'http://x').searchParams.get('n') ?? 0);
        const chunked = req.url!.includes('chunked');
        res.writeHead(202, chunked ? {} : { 'content-length': n });
        // Chunked: no content-length; the cap must hold while streaming.
        for (let i = 0; i < n; i += 1024) res.write(Buffer.alloc(Math.min(1024, n - i), 0x61));
        res.end();
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise((ok) => server.close(ok)));

  test('posts the body with its content type; returns status and body up to 8 KiB', async () => {
    const t = nodeTransport();
    const r = await t.request('POST', `${url}/v1/readings?n=8192`, Uint8Array.of(1, 2, 3), 'application/cbor');
    expect([r.status, r.body.length]).toEqual([202, 8192]);
    expect(seen.at(-1)).toEqual({ type: 'application/cbor', len: 3 });
  });
  test('a response over 8 KiB is dropped (declared or streamed); a dead port is a transport error', async () => {
    const t = nodeTransport();
    await expect(t.request('GET', `${url}/?n=8193`)).rejects.toThrow(code('response-too-large'));
    await expect(t.request('GET', `${url}/chunked?n=100000`)).rejects.toThrow(code('response-too-large'));
    await expect(t.request('GET', 'http://127.0.0.1:1/')).rejects.toThrow(code('transport-error'));
  });
});

test('synthetic sensor drifts slowly around 21 °C / 45 %', () => {
  const s = syntheticSensor(7);
  let prev = s.read();
  for (let i = 0; i < 2000; i++) {
    const v = s.read();
    expect(Math.abs(v.temp - prev.temp)).toBeLessThan(0.2);
    expect(v.temp).toBeGreaterThan(15); expect(v.temp).toBeLessThan(27);
    expect(v.rh).toBeGreaterThan(30); expect(v.rh).toBeLessThan(60);
    prev = v;
  }
});

test('startFleet: devices get distinct identities that persist across restarts', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'iotkx-fleet-'));
  const a = startFleet(3, { dir });
  expect(new Set(a.map((d) => d.address)).size).toBe(3);
  expect(a[0].status().state).toBe('unprovisioned');
  await Promise.all(a.map((d) => d.stop()));
  const b = startFleet(3, { dir });
  expect(b.map((d) => d.address)).toEqual(a.map((d) => d.address));
  await Promise.all(b.map((d) => d.stop()));
});
