// The technician's flow as a user runs it, against a real system: `npm start --devices 0` (anvil, KeyExchange,
// relay, receiver, an authorised operator; writes system.json) and `iotkx sim` (the sensor firmware in XS
// workers, consoles on loopback TCP). Chain state is checked independently with viem.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPublicClient, getAddress, http, parseAbiItem, type Address } from 'viem';
import { keyExchangeAbi } from '../../contracts/build/KeyExchange.js';
import { ConsoleClient } from '../../tools/console-client.js';
import { background, BIN, cleanEnv, iotkx, ROOT, until, type Background } from './run.js';

jest.setTimeout(240_000);

let dir: string;
let system: Background;
let sim: Background;
let info: any;
let consoles: { name: string; port: string; address: string }[];
let env: NodeJS.ProcessEnv;
let pc: ReturnType<typeof createPublicClient>;
const run = (args: string[], extra: Record<string, string> = {}) => iotkx(args, { cwd: dir, env: { ...env, ...extra } });

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-pair-'));
  system = background(path.join(ROOT, 'node_modules/.bin/tsx'), ['hosts/start.ts', '--devices', '0', '--data-dir', path.join(dir, 'run')], { cwd: ROOT });
  sim = background(process.execPath, [BIN, 'sim', '--devices', '2', '--dir', path.join(dir, 'sim'), '--json'], { cwd: dir });
  const file = path.join(dir, 'run', 'system.json');
  info = await until('system.json', async () => (fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : undefined), 120_000);
  consoles = JSON.parse(await sim.line((l) => l.startsWith('{'), 120_000)).consoles;
  env = cleanEnv({ IOTKX_SYSTEM: file });
  pc = createPublicClient({ transport: http(info.rpcUrl) });
}, 240_000);

afterAll(async () => {
  const codes = [await sim?.stop(), await system?.stop(20_000)];
  fs.rmSync(dir, { recursive: true, force: true });
  expect(codes).toEqual([0, 0]);
});

const channel = async (device: string) => {
  const [enrolled, epoch, state] = await pc.readContract({ address: info.contract, abi: keyExchangeAbi, functionName: 'channel', args: [getAddress(device) as Address, info.receiverAddress] });
  return { enrolled, epoch, state };
};
const enrolments = async () => (await pc.getLogs({ address: info.contract, event: parseAbiItem('event DeviceEnrolled(address indexed receiver, address indexed device, address by)'), fromBlock: 0n })).length;
const consoleState = async (port: string) => (await run(['status', '--port', port, '--json'])).json?.console?.state;

test('receiver show and devices --json: the system\'s receiver, its key record, and both simulated consoles', async () => {
  const r = await run(['receiver', 'show', '--json']);
  expect(r.code).toBe(0);
  expect(getAddress(r.json.address)).toBe(info.receiverAddress);
  expect(r.json.chain).toMatchObject({ chainId: info.chainId, keyRecordVersion: 1, keyRecordIsOurs: true, operator: { address: info.operatorAddress, authorised: true } });
  const d = await run(['devices', '--sim-dir', path.join(dir, 'sim'), '--json']);
  expect(d.code).toBe(0);
  for (const c of consoles) expect(d.json.devices).toContainEqual(expect.objectContaining({ port: c.port, address: c.address, state: 'unprovisioned', firmware: expect.stringMatching(/^iotkx-sensor/) }));
});

test('rotate-key refuses while the receiver runs with its keys loaded (exit 5), nothing published', async () => {
  const r = await run(['receiver', 'rotate-key', '--json']);
  expect(r.code).toBe(5);
  expect(r.json.error).toBe('receiver-running');
  const [, version] = await pc.readContract({ address: info.contract, abi: keyExchangeAbi, functionName: 'receiverKey', args: [info.receiverAddress] });
  expect(version).toBe(1);
});

test('an operator with no funds: exit 4 before anything happens (device unprovisioned, not enrolled)', async () => {
  const B = consoles[1];
  const poor = path.join(dir, 'poor.key');
  fs.writeFileSync(poor, `0x${'5a'.repeat(32)}\n`, { mode: 0o600 });
  const add = await run(['receiver', 'add-operator', '--operator-key-file', poor, '--json']);
  expect(add.code).toBe(0);
  expect(add.json.authorised).toBe(true);
  const before = await enrolments();
  const r = await run(['pair', '--port', B.port, '--yes', '--operator-key-file', poor, '--json']);
  expect(r.code).toBe(4);
  expect(r.json).toMatchObject({ ok: false, error: 'insufficient-funds', exit: 4 });
  expect(r.json.message).toMatch(/has 0 ETH, pairing needs .*nothing done/);
  expect(await consoleState(B.port)).toBe('unprovisioned');
  expect((await channel(B.address)).enrolled).toBe(false);
  expect(await enrolments()).toBe(before);
});

test('chain unreachable: exit 4, the device stays unprovisioned', async () => {
  const B = consoles[1];
  const r = await run(['pair', '--port', B.port, '--yes', '--rpc-url', 'http://127.0.0.1:9', '--json']);
  expect(r.code).toBe(4);
  expect(r.json).toMatchObject({ error: 'chain-unreachable' });
  expect(r.json.message).toContain('chain unreachable at http://127.0.0.1:9');
  expect(await consoleState(B.port)).toBe('unprovisioned');
});

let A: string;
test('pair --json: provisioned, enrolled, funded, active; label as PNG and SVG', async () => {
  const c = consoles[0];
  const opNonce = await pc.getTransactionCount({ address: info.operatorAddress });
  const r = await run(['pair', '--port', c.port, '--yes', '--interval', '2', '--exchanges', '5', '--label-dir', path.join(dir, 'labels'), '--json']);
  if (r.code !== 0) throw new Error(`pair failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  A = r.json.device;
  expect(A).toBe(c.address); // EIP-55 in sim's registry and pair's result alike
  expect(r.json).toMatchObject({ state: 'active', receiver: info.receiverAddress, contract: info.contract, chainId: info.chainId, relayUrl: info.relayRpcUrl });
  // The order on chain: enroll, then funding (both from the operator), after provisioning.
  expect(await pc.getTransactionCount({ address: info.operatorAddress })).toBe(opNonce + 2);
  const enroll = await pc.getTransaction({ hash: r.json.enrollTx });
  const fund = await pc.getTransaction({ hash: r.json.fundTx });
  expect([enroll.nonce, fund.nonce]).toEqual([opNonce, opNonce + 1]);
  expect(fund.to?.toLowerCase()).toBe(c.address.toLowerCase());
  // Funding = exchanges × offerGas × maxFeePerGas (the device had nothing before).
  const f = r.json.fees;
  expect(BigInt(r.json.funded)).toBe(5n * BigInt(f.offerGas) * BigInt(f.maxFeePerGas));
  expect(fund.value).toBe(BigInt(r.json.funded));
  expect(await channel(A)).toMatchObject({ enrolled: true, epoch: 1n, state: 2 });
  expect(fs.readFileSync(r.json.label.png).subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  const svg = fs.readFileSync(r.json.label.svg, 'utf8');
  expect(svg).toMatch(/<svg[\s\S]*<\/svg>/);
  // The sticker prints the address and the chain under the code.
  expect(svg).toContain(`>${A}</text>`);
  expect(svg).toContain(`>chain id ${info.chainId}</text>`);
  expect(r.json.label.uri).toBe(`ethereum:${A}@${info.chainId}`);
});

test('readings --json: decrypted readings appear as JSON lines', async () => {
  const lines = await until('two readings', async () => {
    const r = await run(['readings', A, '--json']);
    if (r.code !== 0) throw new Error(r.stderr);
    const rows = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    return rows.length >= 2 ? rows : undefined;
  }, 90_000);
  for (const l of lines) {
    expect(l).toMatchObject({ device: A, epoch: '1' });
    expect(typeof l.values.t).toBe('number');
    expect(typeof l.values.temp).toBe('number');
  }
  const seqs = lines.map((l) => BigInt(l.seq));
  expect(seqs).toEqual([...seqs].sort((a, b) => (a < b ? -1 : 1)));
  // --follow prints new ones as they arrive, and Ctrl-C ends it cleanly.
  const last = seqs[seqs.length - 1];
  const follow = background(process.execPath, [BIN, 'readings', A, '--follow', '--json', '--poll', '500'], { cwd: dir, env });
  try {
    await follow.line((l) => l.startsWith('{') && BigInt(JSON.parse(l).seq) > last, 60_000);
  } finally {
    expect(await follow.stop()).toBe(0);
  }
});

test('pairing an already-provisioned device is refused: exit 5, nothing sent on chain', async () => {
  const nonce = await pc.getTransactionCount({ address: info.operatorAddress });
  const before = await enrolments();
  const r = await run(['pair', '--port', consoles[0].port, '--yes', '--json']);
  expect(r.code).toBe(5);
  expect(r.json).toMatchObject({ ok: false, error: 'already-provisioned', exit: 5 });
  expect(r.json.message).toMatch(/already provisioned \(state active\).*nothing sent on chain/);
  expect(await pc.getTransactionCount({ address: info.operatorAddress })).toBe(nonce);
  expect(await enrolments()).toBe(before);
});

test('status --port --json: chain, receiver and console agree', async () => {
  const r = await run(['status', A, '--port', consoles[0].port, '--json']);
  expect(r.code).toBe(0);
  expect(r.json.chain.channel).toMatchObject({ enrolled: true, epoch: '1', state: 'accepted' });
  expect(r.json.receiver).toMatchObject({ state: 'accepted', epoch: '1' });
  expect(r.json.receiver.readings).toBeGreaterThan(0);
  expect(r.json.console).toMatchObject({ state: 'active', epoch: '1' });
});

test('revoke: the channel is no longer enrolled; revoking again says already revoked (exit 5)', async () => {
  const r = await run(['revoke', A, '--yes', '--json']);
  expect(r.code).toBe(0);
  expect((await channel(A)).enrolled).toBe(false);
  const again = await run(['revoke', A, '--yes', '--json']);
  expect(again.code).toBe(5);
  expect(again.json).toMatchObject({ ok: false, error: 'already-revoked', exit: 5 });
  expect(again.json.message).toMatch(new RegExp(`device ${A} is already revoked from receiver ${info.receiverAddress} \\(block \\d+, tx 0x[0-9a-f]{64}\\): nothing sent`));
  // A device that was never enrolled is another thing: not-enrolled.
  const never = await run(['revoke', consoles[1].address, '--yes', '--json']);
  expect(never.json).toMatchObject({ error: 'not-enrolled', exit: 5 });
});

test('--resume: a device provisioned by an interrupted pairing is enrolled, funded and becomes active', async () => {
  const B = consoles[1];
  const early = await run(['pair', '--port', B.port, '--resume', '--yes', '--json']);
  expect(early.code).toBe(2); // not provisioned yet: --resume is the wrong tool
  // The interruption: provisioning reached the device, the CLI stopped before enrolling.
  const c = await ConsoleClient.open(B.port);
  try {
    await c.request('provision', { config: {
      relayUrl: info.relayRpcUrl, chainId: String(info.chainId), contract: info.contract, receiver: info.receiverAddress, intervalSec: 2,
      maxFeePerGas: '100000000000', maxPriorityFeePerGas: '1000000000', offerGas: '120000', maxTxPerDay: 24, blockTime: 1, backoffMaxSec: 3600,
      rotation: { maxReadings: 0, maxAgeSec: 0 },
    } });
  } finally {
    c.close();
  }
  const refusedWithout = await run(['pair', '--port', B.port, '--yes', '--json']);
  expect(refusedWithout.code).toBe(5);
  const r = await run(['pair', '--port', B.port, '--resume', '--yes', '--exchanges', '3', '--label-dir', path.join(dir, 'labels'), '--json']);
  if (r.code !== 0) throw new Error(`pair --resume failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  expect(r.json).toMatchObject({ device: getAddress(B.address), state: 'active' });
  expect(r.json.enrollTx).toMatch(/^0x/);
  expect(await channel(B.address)).toMatchObject({ enrolled: true, state: 2 });
});
