// The walkthrough of README.md done twice, as a user does it: `npm start -- --devices 0`, `iotkx sim`, the
// `iotkx pair` command sim printed, `iotkx readings --follow`; then `npm start` restarted (with --keep: the
// receiver comes back on another port, --follow must find it; without: a new chain and receiver, the old
// simulated identity must be recognised as the old system's, with what to do), and `iotkx sim --fresh` +
// pair again. Everything is a spawned process against real anvil, relay, receiver and XS devices.
import fs from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { getAddress } from 'viem';
import { background, BIN, cleanEnv, iotkx, ROOT, until, type Background } from './run.js';

jest.setTimeout(600_000);

let dir: string;
let runDir: string;
let simDir: string;
let system: Background | undefined;
let sim: Background | undefined;
let follow: Background | undefined;
let info: any;
let env: NodeJS.ProcessEnv;
const run = (args: string[]) => iotkx(args, { cwd: dir, env, timeoutMs: 300_000 });

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function startSystem(extra: string[]): Promise<void> {
  system = background(path.join(ROOT, 'node_modules/.bin/tsx'), ['hosts/start.ts', '--devices', '0', '--data-dir', runDir, ...extra], { cwd: ROOT });
  await system.line((l) => l.startsWith('running. Join info'), 180_000);
  info = JSON.parse(fs.readFileSync(path.join(runDir, 'system.json'), 'utf8'));
}

async function stopSystem(): Promise<void> {
  const code = await system!.stop(30_000);
  system = undefined;
  expect(code).toBe(0);
}

/** Starts `iotkx sim` as a user does (human output); its console and address from the registry it writes. */
async function startSim(extra: string[]): Promise<{ port: string; address: string }> {
  sim = background(process.execPath, [BIN, 'sim', '--devices', '1', '--dir', simDir, ...extra], { cwd: dir, env });
  const s = sim;
  await s.line((l) => /Ctrl-C/.test(l), 180_000);
  const reg = JSON.parse(fs.readFileSync(path.join(simDir, 'consoles.json'), 'utf8'));
  expect(reg.pid).toBe(s.child.pid);
  return { port: reg.consoles[0].port, address: reg.consoles[0].address };
}

async function stopSim(): Promise<void> {
  const code = await sim!.stop(20_000);
  sim = undefined;
  expect(code).toBe(0);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-rerun-'));
  runDir = path.join(dir, 'run');
  simDir = path.join(dir, 'sim');
  env = cleanEnv({ IOTKX_SYSTEM: path.join(runDir, 'system.json') });
  // --keep from the start: anvil saves its state only in a kept run, so the next --keep can resume it.
  await startSystem(['--keep', '--receiver-port', String(await freePort())]);
}, 240_000);

afterAll(async () => {
  await follow?.stop();
  await sim?.stop(20_000);
  await system?.stop(30_000);
  fs.rmSync(dir, { recursive: true, force: true });
});

let first: { port: string; address: string };
let A: string;
/** The first readings of the first identity: the sensor's series to compare the next identity's with. */
let firstValues: string[] = [];
const series = (lines: string) => lines.split('\n').filter((l) => l.startsWith('{')).slice(0, 3).map((l) => { const { temp, rh } = JSON.parse(l).values; return `${temp}/${rh}`; });

test('sim prints the exact pair command; host:port without tcp:// is a usage error that names tcp://', async () => {
  first = await startSim([]);
  // Its exact pair command, and the address in EIP-55 (the case the other commands show).
  expect(sim!.output()).toContain(`iotkx pair --port ${first.port}\n`);
  expect(first.address).toBe(getAddress(first.address));
  expect(sim!.output()).toContain(first.address);
  const bare = first.port.replace('tcp://', '');
  const r = await run(['pair', '--port', bare, '--yes', '--json']);
  expect(r.json).toMatchObject({ ok: false, error: 'bad-port', exit: 2 });
  expect(r.code).toBe(2);
  expect(r.json.message).toContain(`tcp://${bare}`);
  expect(r.stderr).not.toMatch(/No such file/);
});

test('pair with the printed command: active', async () => {
  const r = await run(['pair', '--port', first.port, '--yes', '--interval', '2', '--exchanges', '5', '--label-dir', path.join(dir, 'labels'), '--json']);
  if (r.code !== 0) throw new Error(`pair failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  A = r.json.device;
  expect(A).toBe(getAddress(first.address));
  expect(r.json.state).toBe('active');
});

test('readings --follow follows the receiver to its new port after `npm start --keep` restarts the system', async () => {
  follow = background(process.execPath, [BIN, 'readings', A, '--follow', '--json', '--poll', '500'], { cwd: dir, env });
  const before = JSON.parse(await follow.line((l) => l.startsWith('{'), 120_000));
  const oldUrl = info.receiverUrl;
  await stopSystem();
  await startSystem(['--keep', '--receiver-port', String(await freePort())]);
  expect(info.receiverUrl).not.toBe(oldUrl);
  // A reading sealed after the restart (a later seq than any printed before it), printed by the same process.
  const restartedAt = Date.now();
  const after = JSON.parse(await follow.line((l) => {
    if (!l.startsWith('{')) return false;
    const x = JSON.parse(l);
    return Date.parse(x.receivedAt) >= restartedAt - 1000 && BigInt(x.seq) > BigInt(before.seq);
  }, 180_000));
  expect(after.device).toBe(A);
  // Nothing printed twice.
  const seen = follow.output().split('\n--- stderr ---\n')[0].split('\n').filter((l) => l.startsWith('{')).map((l) => `${JSON.parse(l).epoch}/${JSON.parse(l).seq}`);
  expect(new Set(seen).size).toBe(seen.length);
  expect(await follow.stop()).toBe(0);
  follow = undefined;
  firstValues = series((await run(['readings', A, '--json'])).stdout);
  expect(firstValues).toHaveLength(3);
});

test('after a restart without --keep, pairing the old simulated identity says it belongs to the old system and what to do', async () => {
  if (system) await stopSystem();
  await startSystem([]);
  const r = await run(['pair', '--port', first.port, '--yes', '--json']);
  expect(r.code).toBe(5);
  expect(r.json).toMatchObject({ ok: false, error: 'provisioned-elsewhere', exit: 5 });
  expect(r.json.message).toContain(info.receiverAddress);
  expect(r.json.message).toMatch(/Nothing sent on chain/);
  expect(r.json.hint).toContain('iotkx sim --fresh');
  expect(r.json.hint).toContain(`iotkx factory-reset --port ${first.port} --confirm ${A}`);
  // --resume would enroll a device that can never reach this system: refused the same way.
  const resumed = await run(['pair', '--port', first.port, '--resume', '--yes', '--json']);
  expect(resumed.json).toMatchObject({ error: 'provisioned-elsewhere', exit: 5 });
});

test('sim warns about kept identities; sim --fresh gives a new one that pairs with the new system', async () => {
  await stopSim();
  await startSim([]);
  expect(sim!.output()).toMatch(/sim0: provisioned by an earlier run[\s\S]*iotkx sim --fresh/);
  await stopSim();
  const fresh = await startSim(['--fresh']);
  expect(getAddress(fresh.address)).not.toBe(A);
  // As a user types it (no --json), stdout a pipe: the QR is plain Unicode, no ANSI escapes.
  const r = await run(['pair', '--port', fresh.port, '--yes', '--interval', '2', '--exchanges', '5', '--label-dir', path.join(dir, 'labels')]);
  if (r.code !== 0) throw new Error(`second pair failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  const B = getAddress(fresh.address);
  expect(r.stdout).toContain(`paired: ${B} is active`);
  expect(r.stdout).toContain(`receiver   ${info.receiverAddress}`);
  expect(r.stdout).toMatch(/[█▀▄]/);
  expect(r.stdout).not.toMatch(/\x1b/);
  expect(fs.readFileSync(path.join(dir, 'labels', `${B}.svg`), 'utf8')).toContain(`>chain id ${info.chainId}</text>`);
  // Another identity under the same name (sim0): another sensor series, not the previous run's again.
  const next = await until('three readings from the new identity', async () => {
    const v = series((await run(['readings', B, '--json'])).stdout);
    return v.length === 3 ? v : undefined;
  }, 120_000);
  expect(firstValues).toHaveLength(3);
  expect(next).not.toEqual(firstValues);
});
