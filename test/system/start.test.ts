import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { until } from '../helpers/until.js';

// `npm start` as a user runs it: a real process with anvil, the contract, relay,
// receiver and simulated devices. Readings must come out decrypted on the receiver's
// §9 API, and Ctrl-C must stop everything.
const ROOT = path.resolve(__dirname, '../..');

/** One request on a §6 console (`tcp://host:port`), one JSON object per line. */
function consoleRequest(port: string, req: object): Promise<any> {
  const u = new URL(port);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname, () => sock.write(`${JSON.stringify(req)}\n`));
    let buf = '';
    sock.on('data', (d) => {
      buf += d;
      for (const line of buf.split('\n').slice(0, -1)) {
        try {
          const msg = JSON.parse(line);
          if (msg.id === (req as any).id) { sock.end(); resolve(msg); return; }
        } catch { /* boot noise */ }
      }
    });
    sock.on('error', reject);
    sock.setTimeout(10_000, () => { sock.destroy(); reject(new Error(`console ${port} did not answer`)); });
  });
}
jest.setTimeout(120_000);

test('npm start: devices pair, exchange keys and their readings arrive decrypted; Ctrl-C stops it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-start-'));
  const child = spawn(path.join(ROOT, 'node_modules/.bin/tsx'), ['hosts/start.ts', '--devices', '2', '--interval', '2', '--data-dir', dir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const info = await until('system.json', async () => {
      const f = path.join(dir, 'system.json');
      return fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, 'utf8')) : undefined;
    }, 60_000);
    expect(info.devices).toHaveLength(2);
    // Each simulated device's §6 console is listed and answers as that device.
    expect(info.consoles.map((c: any) => c.address)).toEqual(info.devices);
    for (const c of info.consoles) {
      const identity = await consoleRequest(c.port, { id: 7, cmd: 'identity' });
      expect(identity).toMatchObject({ id: 7, ok: true, address: c.address });
    }
    for (const key of ['rpcUrl', 'chainId', 'contract', 'relayUrl', 'receiverUrl', 'receiverAddress', 'operatorKeyFile']) expect(info[key]).toBeDefined();

    for (const device of info.devices as string[]) {
      const page = await until(`readings of ${device}`, async () => {
        const res = await fetch(`${info.receiverUrl}/v1/devices/${device}/readings`);
        if (res.status !== 200) return undefined;
        const body = (await res.json()) as any;
        return body.readings.length >= 2 ? body : undefined;
      }, 60_000);
      for (const r of page.readings) {
        expect(r.epoch).toBe('1');
        expect(typeof r.values.t).toBe('number');
        expect(r.values.temp).toBeGreaterThan(-40);
        expect(r.values.temp).toBeLessThan(85);
      }
      const seqs = page.readings.map((r: any) => BigInt(r.seq));
      expect(seqs).toEqual([...seqs].sort((a, b) => (a < b ? -1 : 1)));
    }
    // Readings count from the signed acceptance (§5.6), so they can come before it has its 2 confirmations.
    await until('both acceptances settled', async () => {
      const devices = (await (await fetch(`${info.receiverUrl}/v1/devices`)).json()) as any[];
      return devices.length === 2 && devices.every((d) => d.state === 'accepted');
    }, 60_000, 500);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- npm start output ---\n${out}`);
  } finally {
    child.kill('SIGINT');
    const code = await exited;
    fs.rmSync(dir, { recursive: true, force: true });
    expect(code).toBe(0);
    expect(out).toContain('stopped.');
  }
});

// Issue 16: an embedded anvil that mines only when a transaction arrives (--block-time 0), the receiver told to
// wait for 2 confirmations with the depth-0 fallback after 2 s without a block. Nothing but our own
// transactions makes blocks, so without the fallback the last offers would wait until they expire.
test('npm start --block-time 0 --confirmations 2 --idle-depth0-after 2: every device accepted, readings decrypted, /healthz says why it waited', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-start-automine-'));
  const child = spawn(path.join(ROOT, 'node_modules/.bin/tsx'), ['hosts/start.ts', '--devices', '3', '--interval', '2', '--data-dir', dir,
    '--block-time', '0', '--confirmations', '2', '--idle-depth0-after', '2'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const info = await until('system.json', async () => {
      const f = path.join(dir, 'system.json');
      return fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, 'utf8')) : undefined;
    }, 60_000);
    expect(out).toContain('automine');
    expect(out).toContain('acting at 2 confirmations');
    for (const device of info.devices as string[]) {
      await until(`readings of ${device}`, async () => {
        const res = await fetch(`${info.receiverUrl}/v1/devices/${device}/readings`);
        return res.status === 200 && ((await res.json()) as any).readings.length >= 1;
      }, 90_000, 500);
    }
    // Readings count from the signed acceptance (§5.6, and §9's view says accepted from then on); the acceptance
    // itself settles on chain at depth 0 once the node is idle: the receiver's own state machine says so.
    await until('every acceptance settled on chain', async () => {
      for (const device of info.devices as string[]) {
        const h = (await (await fetch(`${info.receiverUrl}/v1/devices/${device}/history`)).json()) as any;
        if (h.epochs?.[0]?.state !== 'accepted') return false;
      }
      return true;
    }, 60_000, 500);
    const health = (await (await fetch(`${info.receiverUrl}/healthz`)).json()) as any;
    expect(health.chain).toMatchObject({ confirmations: 2 });
    await until('the receiver to say why it acts at depth 0', () =>
      /receiver: no block for \d+ s: the node produces no blocks by itself; acting at depth 0 instead of 2/.test(out), 30_000);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- npm start output ---\n${out}`);
  } finally {
    child.kill('SIGINT');
    const code = await exited;
    fs.rmSync(dir, { recursive: true, force: true });
    expect(code).toBe(0);
  }
});
