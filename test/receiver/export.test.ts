import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { exportLines, exportQueryOf, ExportQueryError, isExportQuery, parseTime } from '../../hosts/receiver/export.js';
import { pad, Store } from '../../hosts/receiver/store.js';
import { startHttp } from '../../hosts/receiver/http.js';
import { ReceiverMetrics } from '../../hosts/receiver/metrics.js';

// Export of decrypted readings: CSV checked with an independent parser (csv-parse), JSON Lines, windows on
// receivedAt, newest first and latest N, and refusals of malformed queries.
const A = '0x' + 'a1'.repeat(20);
const B = '0x' + 'b2'.repeat(20);
const T0 = Date.UTC(2026, 11, 3, 12, 0, 0);

let store: Store;
beforeAll(() => {
  store = new Store(join(mkdtempSync(join(tmpdir(), 'iotkx-export-')), 'r.db'), new Uint8Array(32).fill(3), 'export-test');
  const ins = store.db.prepare('INSERT INTO readings (device, epoch, seq, values_json, t, skewed, received_ms) VALUES (?, ?, ?, ?, 0, 0, ?)');
  for (let i = 1; i <= 10; i++) {
    ins.run(A, pad(1n), pad(BigInt(i)), JSON.stringify({ t: 1796300000 + i, temp: 20 + i / 4, rh: 40 + i }), T0 + i * 60_000);
  }
  // Another device with an odd value set: a string with a comma and a quote, a missing quantity, a nested map.
  store.db.prepare("INSERT INTO devices (device, status, first_seen_ms) VALUES (?, 'enrolled', 0), (?, 'enrolled', 0)").run(A, B);
  ins.run(B, pad(2n), pad(7n), JSON.stringify({ t: 1796300500, note: 'door "A", open', level: { x: 1 } }), T0 + 5 * 60_000 + 1);
});
afterAll(() => store.close());

const text = (q: URLSearchParams, device?: string) => [...exportLines(store, exportQueryOf(q, device))].join('');

test('CSV of one device parses back to every reading, with the quantity columns', () => {
  const rows = parse(text(new URLSearchParams('format=csv'), A), { columns: true }) as Record<string, string>[];
  expect(rows).toHaveLength(10);
  expect(Object.keys(rows[0])).toEqual(['device', 'epoch', 'seq', 'receivedAt', 't', 'rh', 'temp']);
  expect(rows.map((r) => r.seq)).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10']);
  expect(rows[3]).toEqual({ device: A, epoch: '1', seq: '4', receivedAt: '2026-12-03T12:04:00.000Z', t: '1796300004', rh: '44', temp: '21' });
});

test('CSV of all devices quotes what needs quoting and leaves absent quantities empty', () => {
  const rows = parse(text(new URLSearchParams('format=csv')), { columns: true }) as Record<string, string>[];
  expect(rows).toHaveLength(11);
  const b = rows.find((r) => r.device === B)!;
  expect(b.note).toBe('door "A", open');
  expect(b.level).toBe('{"x":1}');
  expect(b.temp).toBe('');
  expect(rows.filter((r) => r.device === A).every((r) => r.note === '')).toBe(true);
});

test('a window on receivedAt, inclusive, in RFC 3339 or unix seconds', () => {
  const q = new URLSearchParams({ format: 'jsonl', since: '2026-12-03T12:03:00Z', until: String((T0 + 6 * 60_000) / 1000) });
  const lines = text(q, A).trim().split('\n').map((l) => JSON.parse(l));
  expect(lines.map((l) => l.seq)).toEqual(['3', '4', '5', '6']);
  expect(lines[0]).toEqual({ device: A, epoch: '1', seq: '3', values: { t: 1796300003, temp: 20.75, rh: 43 }, receivedAt: '2026-12-03T12:03:00.000Z' });
});

test('newest first, and the latest N', () => {
  const desc = JSON.parse(text(new URLSearchParams('format=json&order=desc'), A)).readings.map((r: any) => r.seq);
  expect(desc).toEqual(['10', '9', '8', '7', '6', '5', '4', '3', '2', '1']);
  const latest = JSON.parse(text(new URLSearchParams('format=json&latest=3'))).readings.map((r: any) => `${r.device === A ? 'A' : 'B'}${r.seq}`);
  expect(latest).toEqual(['A10', 'A9', 'A8']);
});

test('malformed queries are refused with a code, and §9 paging is not an export', () => {
  const bad = (qs: string, code: string) => {
    try {
      exportQueryOf(new URLSearchParams(qs));
    } catch (e) {
      expect(e).toBeInstanceOf(ExportQueryError);
      expect((e as ExportQueryError).code).toBe(code);
      return;
    }
    throw new Error(`${qs} was accepted`);
  };
  bad('format=xml', 'bad-format');
  bad('since=yesterday&format=csv', 'bad-since');
  bad('since=2026-12-03&format=csv', 'bad-since'); // a date alone: which zone's midnight?
  bad('format=csv&since=2026-12-04T00:00:00Z&until=2026-12-03T00:00:00Z', 'bad-window');
  bad('format=csv&latest=0', 'bad-limit');
  bad('format=csv&latest=5&limit=5', 'bad-limit');
  bad('format=csv&order=sideways', 'bad-order');
  bad('since=2026-12-03T00:00:00Z', 'bad-format');
  expect(isExportQuery(new URLSearchParams('after=5&limit=10'))).toBe(false);
  expect(isExportQuery(new URLSearchParams('latest=5'))).toBe(true);
  expect(parseTime('2026-12-03T12:00:00+01:00', 'since')).toBe(T0 - 3_600_000);
});

test('over HTTP: streamed exports with a file name, 400 for a bad query, 404 for an unknown device, §9 paging unchanged', async () => {
  const { server, url } = await startHttp({ host: '127.0.0.1', port: 0 }, store, new ReceiverMetrics(), () => {});
  try {
    const csv = await fetch(`${url}/v1/devices/${A}/readings?format=csv&latest=2`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(csv.headers.get('content-disposition')).toBe(`attachment; filename="iotkx-readings-${A}.csv"`);
    expect((parse(await csv.text(), { columns: true }) as any[]).map((r) => r.seq)).toEqual(['10', '9']);
    const all = (await (await fetch(`${url}/v1/readings?format=jsonl`)).text()).trim().split('\n');
    expect(all).toHaveLength(11);
    const bad = await fetch(`${url}/v1/devices/${A}/readings?format=csv&since=soon`);
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: 'bad-since', message: expect.any(String) });
    expect((await fetch(`${url}/v1/devices/${'0x' + 'cd'.repeat(20)}/readings?format=csv`)).status).toBe(404);
    const page = (await (await fetch(`${url}/v1/devices/${A}/readings?limit=3`)).json()) as any;
    expect(Object.keys(page).sort()).toEqual(['next', 'readings']);
    expect(page.readings.map((r: any) => r.seq)).toEqual(['1', '2', '3']);
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
