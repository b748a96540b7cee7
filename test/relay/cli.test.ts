// hosts/relay/main.ts as a process: flags parsed, the relay serves, SIGTERM stops it; bad flags exit 2.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from './helpers.js';

const tsx = join(process.cwd(), 'node_modules', '.bin', 'tsx');

test('starts from flags, answers /healthz, stops on SIGTERM', async () => {
  const db = join(mkdtempSync(join(tmpdir(), 'relay-cli-')), 'cli.db');
  const child = spawn(tsx, ['hosts/relay/main.ts', '--upstream', 'http://127.0.0.1:9', '--chain-id', '31337',
    '--contract', '0x5FbDB2315678afecb367f032d93F642f64180aa3', '--db', db, '--port', '0', '--rate', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /"url":"(http:[^"]+)"/.exec(out);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  const h = await request(`${url}/healthz`, 'GET');
  expect(h.json).toEqual({ ok: true, upstream: false });
  const m = await request(`${url}/metrics`, 'GET');
  expect(m.text).toMatch(/process_cpu_seconds_total/);
  const code = await new Promise((resolve) => {
    child.once('exit', (c) => resolve(c));
    child.kill('SIGTERM');
  });
  expect(code).toBe(0);
}, 30_000);

test('a missing contract or a bad flag exits 2 with the usage', () => {
  const a = spawnSync(tsx, ['hosts/relay/main.ts', '--upstream', 'http://127.0.0.1:9', '--chain-id', '1'], { encoding: 'utf8', env: { ...process.env, IOTKX_CONTRACT: '' } });
  expect(a.status).toBe(2);
  expect(a.stderr).toMatch(/no contract address[\s\S]*usage:/);
  const b = spawnSync(tsx, ['hosts/relay/main.ts', '--chain-id', 'abc'], { encoding: 'utf8' });
  expect(b.status).toBe(2);
  const c = spawnSync(tsx, ['hosts/relay/main.ts', '--upstream', 'http://127.0.0.1:9', '--chain-id', '1', '--contract', '0x5FbDB2315678afecb367f032d93F642f64180aa3', '--upstream-batch', '0'], { encoding: 'utf8' });
  expect(c.status).toBe(2);
  expect(c.stderr).toMatch(/--upstream-batch must be an integer ≥ 1/);
}, 30_000);
