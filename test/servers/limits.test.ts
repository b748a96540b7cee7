// Slow clients and connection caps on the relay and the receiver (issue 15 item 13), enforced before any
// authentication: the receiver here binds 127.0.0.2 with a token, and no hostile client sends one. Each host
// runs in its own process; loopback addresses 127.0.0.x stand in for distinct client machines.
import { holdOpen, rawRequest, startHostProcess, type HostProcess } from './raw.js';
import { until } from '../helpers/until.js';

jest.setTimeout(120_000);
const TOKEN = 'limits-test-token';
const SLOW = { headersTimeoutMs: 600, requestTimeoutMs: 1200, keepAliveTimeoutMs: 600 };
const CAPS = { headersTimeoutMs: 30_000, requestTimeoutMs: 60_000, keepAliveTimeoutMs: 30_000, maxConnections: 8, maxConnectionsPerClient: 3 };

interface Subject { name: string; start(limits: object): Promise<HostProcess>; health: (h: HostProcess) => string }
const hostOf = (h: HostProcess) => new URL(h.url).host;
const SUBJECTS: Subject[] = [
  { name: 'relay', start: (limits) => startHostProcess('relay', { limits }), health: (h) => `GET /healthz HTTP/1.1\r\nHost: ${hostOf(h)}\r\n\r\n` },
  {
    name: 'receiver (token, unauthenticated clients)',
    start: (limits) => startHostProcess('receiver', { host: '127.0.0.2', token: TOKEN, limits }),
    health: (h) => `GET /healthz HTTP/1.1\r\nHost: ${hostOf(h)}\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`,
  },
];

const started: HostProcess[] = [];
afterAll(async () => {
  await Promise.all(started.map((h) => h.stop()));
});

describe.each(SUBJECTS)('$name', (s) => {
  let slow: HostProcess;
  let caps: HostProcess;
  beforeAll(async () => {
    [slow, caps] = await Promise.all([s.start(SLOW), s.start(CAPS)]);
    started.push(slow, caps);
  });
  const ip = (h: HostProcess) => new URL(h.url).hostname;
  const healthz = async (h: HostProcess, localAddress?: string) =>
    (await rawRequest(h.port, s.health(h), { host: ip(h), localAddress, waitMs: 10_000 })).status;

  test('slowloris: headers a byte at a time are cut off with 408, long before the client stops', async () => {
    const head = `GET /healthz HTTP/1.1\r\nHost: ${hostOf(slow)}\r\n`;
    // 40 s of trickle if nobody stops it; the server must close the connection well before.
    const trickle = [head, ...Array.from({ length: 400 }, () => 'X')];
    const a = await rawRequest(slow.port, trickle, { host: ip(slow), gapMs: 100, waitMs: 40_000, untilClose: true });
    expect(a.closed).toBe(true);
    expect(a.status).toBe(408);
    expect(JSON.parse(a.body)).toEqual({ error: 'timeout', message: expect.any(String) });
    expect(await healthz(slow)).toBe(200);
  });

  test('a body trickled after complete headers is cut off at the request timeout', async () => {
    const head = `POST /rpc HTTP/1.1\r\nHost: ${hostOf(slow)}\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n`;
    const a = await rawRequest(slow.port, [head, ...Array.from({ length: 400 }, () => ' ')], { host: ip(slow), gapMs: 100, waitMs: 40_000, untilClose: true });
    expect(a.closed).toBe(true);
    expect([408, 405, 401]).toContain(a.status); // the receiver serves no POST: it may refuse before the body ends
    expect(await healthz(slow)).toBe(200);
  });

  test('a connection that never sends a byte is closed', async () => {
    const { closed, received } = await holdOpen(slow.port, { host: ip(slow), localAddress: '127.0.0.3' });
    await expect(Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 30_000))])).resolves.toBe('closed');
    expect(received()).toMatch(/^HTTP\/1\.1 408 /);
  });

  test('an idle keep-alive connection is closed after its timeout', async () => {
    const { closed, received } = await holdOpen(slow.port, { host: ip(slow), data: s.health(slow) });
    await expect(Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open'), 30_000))])).resolves.toBe('closed');
    // One answer, and no unsolicited 408 on the idle connection.
    expect(received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(received().match(/HTTP\/1\.1/g)).toHaveLength(1);
  });

  test('a body no route reads is thrown away up to a bound, then the connection is dropped while the client still sends', async () => {
    const chunk = Buffer.from(`10000\r\n${' '.repeat(0x10000)}\r\n`);
    const head = `POST /nope HTTP/1.1\r\nHost: ${hostOf(caps)}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n`;
    // 12.5 MiB offered; the long request timeout of this host cannot be what stops it.
    const a = await rawRequest(caps.port, [head, ...Array.from({ length: 200 }, () => chunk)], { host: ip(caps), localAddress: '127.0.0.6', untilClose: true, gapMs: 20, waitMs: 60_000 });
    expect(a.status).toBeGreaterThanOrEqual(400);
    expect(a.closed).toBe(true);
    expect(a.written).toBeLessThan(100 * chunk.length);
    expect(await healthz(caps)).toBe(200);
  });

  test('per client: the N+1th connection from one address is closed at once; others are still served', async () => {
    const held = await Promise.all(Array.from({ length: CAPS.maxConnectionsPerClient }, () => holdOpen(caps.port, { host: ip(caps), localAddress: '127.0.0.4' })));
    // Let the server register them (accept runs asynchronously to the client's connect).
    await until('the over-cap connection to be refused', async () => {
      const over = await rawRequest(caps.port, s.health(caps), { host: ip(caps), localAddress: '127.0.0.4', waitMs: 10_000 });
      return over.status === 0 && over.closed;
    }, 20_000, 100);
    // The held ones are untouched, and another client is served meanwhile.
    expect(await healthz(caps, '127.0.0.5')).toBe(200);
    for (const h of held) expect(h.sock.destroyed).toBe(false);
    for (const h of held) h.sock.destroy();
    await Promise.all(held.map((h) => h.closed));
    await until('the client to be served again', async () => (await healthz(caps, '127.0.0.4')) === 200, 20_000, 100);
  });

  test('in total: the N+1th connection is closed at once; served again once one is released', async () => {
    const held = [];
    for (let i = 0; i < CAPS.maxConnections; i++) held.push(await holdOpen(caps.port, { host: ip(caps), localAddress: `127.0.1.${10 + i}` }));
    await until('the over-cap connection to be refused', async () => {
      const over = await rawRequest(caps.port, s.health(caps), { host: ip(caps), localAddress: '127.0.1.99', waitMs: 10_000 });
      return over.status === 0 && over.closed;
    }, 20_000, 100);
    held.pop()!.sock.destroy();
    await until('a client to be served again', async () => (await healthz(caps, '127.0.1.98')) === 200, 20_000, 100);
    for (const h of held) h.sock.destroy();
  });
});
