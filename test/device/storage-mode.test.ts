// Issue 15 item 14 (storage): the files that hold a device's identity key (the Node device's
// FileStorage, the simulator's NVS file) are owner-only (0600) whatever the umask, also when an
// older file was wider, and the folder a Node device or simulated device creates is 0700.
import '../helpers/node-random.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FileStorage } from '../../hosts/device-node/storage.js';
import { startNodeDevice } from '../../hosts/device-node/device.js';
import { SimNvs } from '../../hosts/sim/nvs.js';

const mode = (p: string) => fs.statSync(p).mode & 0o777;
let dir: string;
let umask: number;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-mode-'));
  umask = process.umask(0); // the most permissive umask: modes must come from the code
});
afterEach(() => {
  process.umask(umask);
  fs.rmSync(dir, { recursive: true, force: true });
});

test.each([['FileStorage', FileStorage], ['SimNvs', SimNvs]])('%s: the key file is 0600 from its first write, after rewrites and deletes', (_name, Cls) => {
  const file = path.join(dir, 'd.json');
  const s = new Cls(file);
  s.set('id.0', new Uint8Array(41).fill(7));
  expect(mode(file)).toBe(0o600);
  s.set('cfg.0', new Uint8Array(100));
  s.delete('cfg.0');
  expect(mode(file)).toBe(0o600);
  expect(fs.readdirSync(dir)).toEqual(['d.json']); // no temp file left behind
  expect(new Cls(file).get('id.0')).toEqual(new Uint8Array(41).fill(7));
});

test('a wider file from an older version is narrowed to 0600 when opened; a stale temp file too', () => {
  const file = path.join(dir, 'old.json');
  fs.writeFileSync(file, JSON.stringify({ 'id.0': '07'.repeat(41) }), { mode: 0o644 });
  fs.writeFileSync(`${file}.tmp`, '{}', { mode: 0o666 });
  expect(mode(file)).toBe(0o644);
  const s = new FileStorage(file);
  expect(mode(file)).toBe(0o600);
  s.set('x', Uint8Array.of(1));
  expect(mode(file)).toBe(0o600);
  expect(fs.existsSync(`${file}.tmp`)).toBe(false);
});

test('a Node device creates its folder 0700 and its key file 0600', async () => {
  const devDir = path.join(dir, 'devices');
  const d = startNodeDevice({ dir: devDir, name: 'a', transport: { request: async () => { throw new Error('offline'); } } });
  await d.stop();
  expect(mode(devDir)).toBe(0o700);
  expect(mode(path.join(devDir, 'a.json'))).toBe(0o600);
});
