import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { startHttp } from '../../hosts/receiver/http.js';
import { ReceiverMetrics } from '../../hosts/receiver/metrics.js';
import { pad, Store } from '../../hosts/receiver/store.js';
import { iotkx } from './run.js';

// `iotkx readings … --format` as a provider runs it: the real CLI against a receiver's HTTP API, its output parsed
// by an independent CSV parser; malformed queries and unknown devices get clear errors and usage exit codes.
const A = '0x' + 'a1'.repeat(20);
const T0 = Date.UTC(2026, 11, 3, 12, 0, 0);
let store: Store;
let url: string;
let close: () => Promise<void>;
const cwd = mkdtempSync(join(tmpdir(), 'iotkx-cli-export-'));

beforeAll(async () => {
  store = new Store(join(cwd, 'r.db'), new Uint8Array(32).fill(9), 'cli-export');
  store.db.prepare("INSERT INTO devices (device, status, first_seen_ms) VALUES (?, 'enrolled', 0)").run(A);
  const ins = store.db.prepare('INSERT INTO readings (device, epoch, seq, values_json, t, skewed, received_ms) VALUES (?, ?, ?, ?, 0, 0, ?)');
  for (let i = 1; i <= 6; i++) ins.run(A, pad(1n), pad(BigInt(i)), JSON.stringify({ t: 1796300000 + i, temp: 20 + i, rh: 50 }), T0 + i * 60_000);
  const h = await startHttp({ host: '127.0.0.1', port: 0 }, store, new ReceiverMetrics(), () => {});
  url = h.url;
  close = async () => { h.server.closeAllConnections(); await new Promise<void>((r) => h.server.close(() => r())); };
});
afterAll(async () => { await close(); store.close(); });

test('CSV of a window to stdout, JSON Lines of the latest N to a file, --all', async () => {
  const csv = await iotkx(['readings', A, '--receiver-url', url, '--format', 'csv', '--since', '2026-12-03T12:02:00Z', '--until', '2026-12-03T12:04:00Z'], { cwd });
  expect(csv.code).toBe(0);
  const rows = parse(csv.stdout, { columns: true }) as any[];
  expect(rows.map((r) => r.seq)).toEqual(['2', '3', '4']);
  expect(rows[0]).toMatchObject({ device: A, epoch: '1', temp: '22', rh: '50' });

  const out = join(cwd, 'latest.jsonl');
  const jl = await iotkx(['readings', A, '--receiver-url', url, '--format', 'jsonl', '--latest', '2', '-o', out], { cwd });
  expect(jl.code).toBe(0);
  expect(readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l).seq)).toEqual(['6', '5']);

  const all = await iotkx(['readings', '--all', '--receiver-url', url, '--format', 'jsonl'], { cwd });
  expect(all.code).toBe(0);
  expect(all.stdout.trim().split('\n')).toHaveLength(6);
});

test('the table shows units; bad queries and unknown devices are clear errors', async () => {
  const table = await iotkx(['readings', A, '--receiver-url', url], { cwd });
  expect(table.code).toBe(0);
  expect(table.stdout).toContain('temp=21 °C');
  expect(table.stdout).toContain('rh=50 %');

  const bad = await iotkx(['readings', A, '--receiver-url', url, '--format', 'csv', '--since', 'last tuesday'], { cwd });
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('since must be an RFC 3339 time');
  const noFormat = await iotkx(['readings', A, '--receiver-url', url, '--latest', '1'], { cwd });
  expect(noFormat.code).toBe(2);
  expect(noFormat.stderr).toContain('add --format');
  const both = await iotkx(['readings', A, '--all', '--receiver-url', url, '--format', 'csv'], { cwd });
  expect(both.code).toBe(2);
  const unknown = await iotkx(['readings', '0x' + 'cd'.repeat(20), '--receiver-url', url, '--format', 'csv'], { cwd });
  expect(unknown.code).not.toBe(0);
  expect(unknown.stderr).toContain('knows no device');
});
