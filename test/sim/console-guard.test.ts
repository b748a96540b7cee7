// The simulator consoles (XS: hosts/sim/device.ts; Node fallback: tools/sim-console.ts) accept only
// well-formed console lines (issue 15 item 14). A web page can make a browser send an HTTP request to a
// loopback port; its body can hold a provision command on a line of its own. Raw sockets send such requests,
// and others that are not one JSON object a line, and then the device must still be unprovisioned.
import '../helpers/node-random.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { SimDevice } from '../../hosts/sim/device.js';
import { startSimConsole } from '../../tools/sim-console.js';

jest.setTimeout(120_000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iotkx-console-guard-'));
const config = {
  relayUrl: 'http://127.0.0.1:9/rpc', chainId: '31337', contract: `0x${'11'.repeat(20)}`, receiver: `0x${'22'.repeat(20)}`,
  intervalSec: 60, maxFeePerGas: '1000000000', maxPriorityFeePerGas: '1', offerGas: '120000', maxTxPerDay: 5, blockTime: 1,
  backoffMaxSec: 60, rotation: { maxReadings: 0, maxAgeSec: 0 },
};
const provision = JSON.stringify({ id: 1, cmd: 'provision', config });

/** Write `data`, collect every line until the console closes the connection (or `lines` came, or `waitMs`). */
function exchange(port: number, data: string, waitMs = 5000, lines = Infinity): Promise<{ lines: any[]; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      resolve({ lines: buf.split('\n').filter(Boolean).map((l) => JSON.parse(l)), closed });
    };
    const t = setTimeout(() => finish(false), waitMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      if (buf.split('\n').length - 1 >= lines) finish(false);
    });
    s.on('error', () => undefined);
    s.on('close', () => finish(true));
    s.on('connect', () => s.write(data));
  });
}

const http = (port: number, body: string, method = 'POST') =>
  `${method} / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: http://evil.example\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

const HOSTILE: Array<[string, (port: number) => string]> = [
  ['a browser\'s cross-protocol POST whose body is a provision line', (p) => http(p, `${provision}\n`)],
  ['the same, body after a blank line and CRLFs', (p) => http(p, `\r\n\r\n${provision}\r\n${provision}\n`)],
  ['a GET with the command in a header line', (p) => `GET / HTTP/1.1\r\nHost: 127.0.0.1:${p}\r\nX: y\r\n${provision}\r\n\r\n`],
  ['a PUT (any method)', (p) => http(p, `${provision}\n`, 'PUT')],
  ['an HTTP/1.0 request line alone first', () => `GET /\n${provision}\n`],
  ['a JSON array line first', () => `[${provision}]\n${provision}\n`],
  ['a JSON string line first', () => `"${'x'}"\n${provision}\n`],
  ['a JSON number line first', () => `42\n${provision}\n`],
  ['plain text first', () => `hello\n${provision}\n`],
  ['an overlong line whose tail is a provision command', () => `${'x'.repeat(70 * 1024)}${provision}\n${provision}\n`],
];

interface Console { name: string; port: number; state(): Promise<string>; stop(): Promise<void> }
const CONSOLES: Array<[string, (name: string) => Promise<Console>]> = [
  ['XS simulator (hosts/sim)', async (name) => {
    const d = await SimDevice.start({ dir, name, maxSleepMs: 500 });
    return { name, port: d.consolePort, state: async () => (await d.console({ cmd: 'identity' })).state, stop: () => d.stop() };
  }],
  ['Node simulator (tools/sim-console)', async (name) => {
    const c = await startSimConsole({ dir, name, maxSleepMs: 500 });
    const state = async () => (await exchange(c.port, '{"id":7,"cmd":"identity"}\n', 10_000, 1)).lines[0].state;
    return { name, port: c.port, state, stop: () => c.stop() };
  }],
];

describe.each(CONSOLES)('%s', (_label, start) => {
  let con: Console;
  beforeAll(async () => {
    con = await start(`guard-${_label.split(' ')[0]}`);
  });
  afterAll(async () => {
    await con?.stop();
  });

  test.each(HOSTILE)('%s: one bad-request error, the connection closed, the device still unprovisioned', async (_name, make) => {
    const r = await exchange(con.port, make(con.port));
    expect(await con.state()).toBe('unprovisioned');
    expect(r.closed).toBe(true);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatchObject({ id: null, ok: false, error: expect.stringMatching(/^(bad-request|line-too-long)$/) });
  });

  test('well-formed lines still work, several on one connection, and the rule closes only that connection', async () => {
    const r = await exchange(con.port, '{"id":1,"cmd":"identity"}\n\n{"id":2,"cmd":"status"}\nnot json\n{"id":3,"cmd":"status"}\n');
    expect(r.lines.map((l) => [l.id, l.ok])).toEqual([[1, true], [2, true], [null, false]]);
    expect(r.closed).toBe(true);
    expect(await con.state()).toBe('unprovisioned');
    const p = await exchange(con.port, `${provision}\n`, 10_000, 1);
    expect(p.lines[0]).toMatchObject({ id: 1, ok: true, state: 'provisioned' });
  });
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
