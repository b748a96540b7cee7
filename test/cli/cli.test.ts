// The CLI without a running system: help, usage errors, console failures (nothing listening, a port that
// does not speak iotkx), an unreachable chain, flash without the SDK, and the console client's protocol
// handling (ids, retries, events, boot chatter) against scripted consoles.
import fs from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { getAddress } from 'viem';
import { ConsoleClient, ConsoleError, readIdentity } from '../../tools/console-client.js';
import { buildProgram } from '../../tools/program.js';
import { background, BIN, cleanEnv, iotkx, until } from './run.js';

jest.setTimeout(120_000);
let dir: string;
beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-cli-')); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A TCP server whose reply to each line is scripted. */
async function scripted(onLine: (line: string, sock: Socket, n: number) => void, onConnect?: (sock: Socket) => void): Promise<{ port: number; server: Server; close(): Promise<void> }> {
  const socks = new Set<Socket>();
  const server = createServer((sock) => {
    socks.add(sock);
    sock.on('error', () => undefined);
    onConnect?.(sock);
    let buf = '';
    let n = 0;
    sock.on('data', (d) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.trim()) onLine(line, sock, n++);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return { port, server, close: () => new Promise<void>((r) => { for (const s of socks) s.destroy(); server.close(() => r()); }) };
}

async function closedPort(): Promise<number> {
  const s = await scripted(() => undefined);
  await s.close();
  return s.port;
}

// A valid identity (address derived from the public key), from hardhat's first development key.
const PUB = '0x048318535b54105d4a7aae60c08fc45f9687181b4fdfc625bd1a753fa7397fed753547f11ca8696646f2f3acb08e31016afac23e630c5d11f59f61fef57b0d2aa5';
const ADDR = '0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266';

test('--help on every command: a description and its options; the top-level help documents the exit codes', async () => {
  const top = await iotkx(['--help'], { cwd: dir });
  expect(top.code).toBe(0);
  expect(top.stdout).toContain('Exit codes:');
  expect(top.stdout).toMatch(/5 refused/);
  // Every command in the tree (in-process: one Node start-up per command would cost ~1 s each)…
  const all: string[] = [];
  const walk = (c: Command, prefix: string) => {
    for (const sub of c.commands) {
      const name = `${prefix}${sub.name()}`;
      all.push(name);
      expect({ name, described: sub.description().length > 10 || sub.summary().length > 10 }).toEqual({ name, described: true });
      expect(sub.helpInformation()).toContain(`Usage: iotkx ${name}`);
      walk(sub, `${name} `);
    }
  };
  walk(buildProgram(), '');
  expect(all).toEqual(expect.arrayContaining(['receiver init', 'receiver show', 'receiver rotate-key', 'receiver add-operator', 'chain up', 'chain deploy',
    'chain status', 'devices', 'pair', 'status', 'readings', 'revoke', 'factory-reset', 'flash', 'sim']));
  // …and a few through the bin, as a user types them.
  const runs = await Promise.all(['pair', 'receiver init', 'chain up'].map((c) => iotkx([...c.split(' '), '--help'], { cwd: dir })));
  for (const r of runs) expect(r.code).toBe(0);
  expect(runs[0].stdout).toContain('Usage: iotkx pair [options]');
  expect(runs[0].stdout).toMatch(/--exchanges <n>/);
});

test('usage errors exit 2: unknown option, missing required option, no configuration', async () => {
  const unknown = await iotkx(['devices', '--frobnicate'], { cwd: dir });
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toMatch(/unknown option '--frobnicate'/);
  const noPort = await iotkx(['pair', '--yes'], { cwd: dir });
  expect(noPort.code).toBe(2);
  expect(noPort.stderr).toMatch(/--port/);
  // No join file in this directory and no flags: the CLI says where the chain could come from.
  const noConfig = await iotkx(['pair', '--port', 'tcp://127.0.0.1:9', '--yes', '--json'], { cwd: dir });
  expect(noConfig.code).toBe(2);
  expect(noConfig.json).toMatchObject({ ok: false, error: 'usage', exit: 2 });
  expect(noConfig.json.message).toMatch(/no rpcUrl configured: pass --rpc-url or IOTKX_RPC_URL/);
  const badSystem = await iotkx(['status', '--system', path.join(dir, 'missing.json')], { cwd: dir });
  expect(badSystem.code).toBe(2);
  expect(badSystem.stderr).toMatch(/join file .*missing\.json does not exist/);
});

// pair reads the console before touching the chain, so these need no chain: the flags only have to parse.
const FAKE_CHAIN = ['--rpc-url', 'http://127.0.0.1:9', '--contract', '0x5FbDB2315678afecb367f032d93F642f64180aa3', '--receiver',
  '0x70997970C51812dc3A010C7d01b50e0d17dc79C8', '--relay-url', 'http://127.0.0.1:9'];

test('wrong port: nothing listening → exit 3 with a clear message', async () => {
  const port = await closedPort();
  const r = await iotkx([...FAKE_CHAIN, 'pair', '--port', `tcp://127.0.0.1:${port}`, '--yes', '--json'], { cwd: dir, env: cleanEnv({ IOTKX_OPERATOR_KEY: `0x${'11'.repeat(32)}` }) });
  expect(r.code).toBe(3);
  expect(r.json).toMatchObject({ ok: false, error: 'connect-failed', exit: 3 });
  expect(r.json.message).toMatch(/nothing is listening there/);
});

test('a port that does not speak iotkx (text, or other JSON) → exit 3 "not iotkx firmware"', async () => {
  const text = await scripted((_l, sock) => sock.write('ets Jun  8 2016 00:22:57\r\nrst:0x1 (POWERON_RESET)\r\n'));
  const other = await scripted((_l, sock) => sock.write('{"jsonrpc":"2.0","id":1,"error":{"code":-32700}}\n'));
  try {
    for (const s of [text, other]) {
      const r = await iotkx([...FAKE_CHAIN, 'pair', '--port', `tcp://127.0.0.1:${s.port}`, '--yes', '--console-timeout', '300', '--json'], { cwd: dir, env: cleanEnv({ IOTKX_OPERATOR_KEY: `0x${'11'.repeat(32)}` }) });
      expect(r.code).toBe(3);
      expect(r.json).toMatchObject({ ok: false, error: 'not-iotkx', exit: 3 });
      expect(r.json.message).toMatch(/is this iotkx firmware\?/);
    }
    // An HTTP server closes after its error page: also not iotkx, found without waiting for timeouts.
    const http = await scripted((_l, sock) => sock.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    const r = await iotkx(['status', '--port', `tcp://127.0.0.1:${http.port}`, '--json'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/is this iotkx firmware\?.*HTTP\/1\.1 400/);
    await http.close();
  } finally {
    await text.close();
    await other.close();
  }
});

test('an identity whose address is not its public key\'s is refused', async () => {
  const s = await scripted((l, sock) => {
    const { id } = JSON.parse(l);
    sock.write(`${JSON.stringify({ id, ok: true, address: '0x' + '22'.repeat(20), publicKey: PUB, firmware: 'x', state: 'unprovisioned' })}\n`);
  });
  try {
    const r = await iotkx(['factory-reset', '--port', `tcp://127.0.0.1:${s.port}`, '--confirm', ADDR, '--json'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.json.message).toMatch(/is not its publicKey's/);
  } finally {
    await s.close();
  }
});

test('chain unreachable → exit 4 naming the URL', async () => {
  const port = await closedPort();
  const r = await iotkx(['chain', 'status', '--rpc-url', `http://127.0.0.1:${port}`, '--json'], { cwd: dir });
  expect(r.code).toBe(4);
  expect(r.json).toMatchObject({ ok: false, error: 'chain-unreachable', exit: 4 });
  expect(r.json.message).toContain(`chain unreachable at http://127.0.0.1:${port}`);
});

test('flash without the Moddable SDK → exit 8 with what to install; with it, runs mcconfig -d -m -p <platform> <manifest> with UPLOAD_PORT', async () => {
  const none = await iotkx(['flash', '--port', '/dev/ttyUSB0'], { cwd: dir });
  expect(none.code).toBe(8);
  expect(none.stderr).toMatch(/MODDABLE is not set/);
  expect(none.stderr).toMatch(/Moddable SDK 8\.x/);
  expect(none.stderr).toMatch(/ESP-IDF v6\.0/);
  expect(none.stderr).toMatch(/source \$IDF_PATH\/export\.sh/);
  // Step 3 of the hint is a build the console works with.
  expect(none.stderr).toMatch(/3\. then: +iotkx flash --port \S+ --platform esp32 --release/);

  // --dry-run prints the exact command whatever is missing; exit 8 still says it could not run yet.
  const manifest0 = path.join(dir, 'dry-manifest.json');
  fs.writeFileSync(manifest0, '{}');
  const dry = await iotkx(['flash', '--port', '/dev/ttyUSB3', '--manifest', manifest0, '--dry-run'], { cwd: dir });
  expect(dry.code).toBe(8);
  expect(dry.stdout).toContain(`UPLOAD_PORT=/dev/ttyUSB3 mcconfig -d -m -p esp32 ${manifest0}`);
  expect(dry.stderr).toMatch(/MODDABLE is not set/);
  expect(dry.stderr).toMatch(/debug build .* needs --release/);
  const dryJson = await iotkx(['flash', '--port', '/dev/ttyUSB3', '--manifest', manifest0, '--release', '--dry-run', '--json'], { cwd: dir });
  expect(dryJson.code).toBe(8);
  expect(dryJson.json).toMatchObject({ command: ['mcconfig', '-m', '-p', 'esp32', manifest0], ran: false, ready: false });

  // A stand-in mcconfig records how it was called, then fails or succeeds as told.
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  const log = path.join(dir, 'mcconfig.log');
  fs.writeFileSync(path.join(bin, 'mcconfig'), `#!/bin/sh\necho "$UPLOAD_PORT $*" > ${log}\nexit \${FAKE_EXIT:-0}\n`, { mode: 0o755 });
  const manifest = path.join(dir, 'manifest.json');
  fs.writeFileSync(manifest, '{}');
  const env = (extra: Record<string, string>) => cleanEnv({ MODDABLE: dir, IDF_PATH: dir, PATH: `${bin}${path.delimiter}${process.env.PATH}`, ...extra });
  const ok = await iotkx(['flash', '--port', '/dev/ttyUSB7', '--platform', 'esp32/nodemcu', '--manifest', manifest, '--json'], { cwd: dir, env: env({}) });
  expect(ok.code).toBe(0);
  expect(JSON.parse(ok.stdout.trim().split('\n').pop()!)).toMatchObject({ ran: true, uploadPort: '/dev/ttyUSB7' });
  expect(fs.readFileSync(log, 'utf8').trim()).toBe(`/dev/ttyUSB7 -d -m -p esp32/nodemcu ${manifest}`);
  // With everything present, a dry run prints the command and exits 0 without running mcconfig.
  fs.rmSync(log, { force: true });
  const ready = await iotkx(['flash', '--port', '/dev/ttyUSB7', '--manifest', manifest, '--release', '--dry-run'], { cwd: dir, env: env({}) });
  expect(ready.code).toBe(0);
  expect(ready.stdout).toContain(`UPLOAD_PORT=/dev/ttyUSB7 ${path.join(bin, 'mcconfig')} -m -p esp32 ${manifest}`);
  expect(fs.existsSync(log)).toBe(false);
  const failed = await iotkx(['flash', '--port', '/dev/ttyUSB7', '--manifest', manifest], { cwd: dir, env: env({ FAKE_EXIT: '3' }) });
  expect(failed.code).toBe(1);
  expect(failed.stderr).toMatch(/mcconfig failed \(exit code 3\)/);
});

test('status formats the console\'s report: nested objects indented, times as RFC 3339 and "ago", addresses EIP-55', async () => {
  const at = Date.now() - 42_000;
  const s = await scripted((l, sock) => {
    const { id, cmd } = JSON.parse(l);
    const reply = cmd === 'identity'
      ? { address: ADDR, publicKey: PUB, firmware: 'f', state: 'active' }
      : { state: 'active', epoch: '1', pendingEpoch: null, lastError: { code: 'transport-error', message: 'relay down' }, relayReachable: false,
        readings: { queued: 2, sent: 7, dropped: 0 }, lastReading: { epoch: '1', seq: '9', at }, keyVersion: 1, txToday: 1, lastAction: 'idle', tickError: null };
    sock.write(`${JSON.stringify({ id, ok: true, ...reply })}\n`);
  });
  try {
    const r = await iotkx(['status', '--port', `tcp://127.0.0.1:${s.port}`], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`device ${getAddress(ADDR)}`);
    expect(r.stdout).not.toMatch(/[{}]/); // no raw JSON objects in the key-value list
    expect(r.stdout).not.toContain(String(at)); // no millisecond timestamps
    expect(r.stdout).toMatch(/^ +lastReading:\n +epoch +1\n +seq +9\n +at +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(4\d s ago\)$/m);
    expect(r.stdout).toMatch(/^ +lastError:\n +code +transport-error\n +message +relay down$/m);
    expect(r.stdout).toMatch(/^ +pendingEpoch +-$/m);
    const j = await iotkx(['status', '--port', `tcp://127.0.0.1:${s.port}`, '--json'], { cwd: dir });
    expect(j.json.device).toBe(getAddress(ADDR));
    expect(j.json.console.lastReading.at).toBe(at); // JSON keeps the numbers
  } finally {
    await s.close();
  }
});

describe('console client (§6 framing)', () => {
  test('matches replies by id, ignores events and boot chatter, repeats a read-only request whose reply was lost', async () => {
    const s = await scripted((l, sock, n) => {
      const { id, cmd } = JSON.parse(l);
      if (n === 0) return; // the first request is lost
      sock.write('I (312) boot: chatter before the reply\r\n{"event":"boot-failed","error":"x"}\n');
      sock.write(`${JSON.stringify({ id: id + 100, ok: true })}\n`); // not ours
      sock.write(`${JSON.stringify({ id, ok: true, cmd, address: ADDR, publicKey: PUB, firmware: 'f', state: 'unprovisioned' })}\n`);
    });
    const c = await ConsoleClient.open(`tcp://127.0.0.1:${s.port}`, { timeoutMs: 300, retries: 2 });
    try {
      const id = await readIdentity(c);
      expect(id).toEqual({ address: ADDR, publicKey: PUB, firmware: 'f', state: 'unprovisioned' });
      expect(c.events).toEqual([{ event: 'boot-failed', error: 'x' }]);
    } finally {
      c.close();
      await s.close();
    }
  });

  test('a device error keeps its code; provision is never repeated blindly', async () => {
    let provisions = 0;
    const s = await scripted((l, sock) => {
      const { id, cmd } = JSON.parse(l);
      if (cmd === 'provision') { provisions++; return; } // never answers
      sock.write(`${JSON.stringify({ id, ok: false, error: 'already-provisioned', message: 'factory-reset first' })}\n`);
    });
    const c = await ConsoleClient.open(`tcp://127.0.0.1:${s.port}`, { timeoutMs: 200, retries: 3 });
    try {
      await expect(c.request('status')).rejects.toMatchObject({ code: 'device-error', deviceCode: 'already-provisioned' });
      const e = await c.request('provision', { config: {} }).catch((x: unknown) => x as ConsoleError);
      expect(e).toBeInstanceOf(ConsoleError);
      expect(e.code).toBe('timeout');
      expect(provisions).toBe(1);
    } finally {
      c.close();
      await s.close();
    }
  });
});

test('sim --engine node: consoles listed by `devices`; factory-reset needs the device address and gives a new identity', async () => {
  const simDir = path.join(dir, 'sim-node');
  const sim = background(process.execPath, [BIN, 'sim', '--engine', 'node', '--devices', '1', '--dir', simDir, '--json'], { cwd: dir });
  try {
    const reg = JSON.parse(await sim.line((l) => l.startsWith('{'), 60_000));
    expect(reg.engine).toBe('node');
    const [c] = reg.consoles;
    expect(c.port).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    const listed = await iotkx(['devices', '--sim-dir', simDir, '--json'], { cwd: dir });
    expect(listed.code).toBe(0);
    expect(listed.json.devices).toContainEqual(expect.objectContaining({ kind: 'sim', port: c.port, address: c.address, state: 'unprovisioned' }));

    const wrong = await iotkx(['factory-reset', '--port', c.port, '--confirm', ADDR, '--json'], { cwd: dir });
    expect(wrong.code).toBe(5);
    expect(wrong.json.error).toBe('bad-confirmation');
    // Without --confirm and without a terminal to type it on: a usage error, nothing wiped.
    const untyped = await iotkx(['factory-reset', '--port', c.port], { cwd: dir });
    expect(untyped.code).toBe(2);
    const st = await iotkx(['status', '--port', c.port, '--json'], { cwd: dir });
    expect(st.json.device).toBe(c.address); // EIP-55 in every command (the registry, devices, status)
    expect(c.address).toBe(getAddress(c.address));

    const reset = await iotkx(['factory-reset', '--port', c.port, '--confirm', c.address.toUpperCase().replace('0X', '0x'), '--json'], { cwd: dir });
    expect(reset.code).toBe(0);
    expect(reset.json).toMatchObject({ device: c.address, wiped: true });
    const after = await until('a new identity', async () => {
      const r = await iotkx(['status', '--port', c.port, '--json'], { cwd: dir });
      return r.code === 0 && r.json.device !== c.address ? r.json : undefined;
    }, 30_000);
    expect(after.console.state).toBe('unprovisioned');
  } finally {
    expect(await sim.stop()).toBe(0);
  }
});
