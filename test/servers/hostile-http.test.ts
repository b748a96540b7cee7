// Hostile requests against every iotkx HTTP server, each running in a process of its own as under `npm start`:
// odd request lines, absolute- and authority-form targets, `//`-style paths that a URL parser reads as a host,
// bad percent-escapes, malformed and oversized headers. Every one gets a 4xx with the §9 error body
// {"error","message"}, never a 5xx, never a dropped process; /healthz answers after each.
import { rawRequest, startHostProcess, type HostProcess, type RawAnswer } from './raw.js';

jest.setTimeout(120_000);
const TOKEN = 't0ken-for-hostile-tests';

type Variant = 'relay' | 'receiver' | 'receiver-token' | 'receiver-token-auth';
interface Row {
  name: string;
  /** Raw request; `{H}` is replaced by the Host header (and Authorization where the variant sends it). */
  raw: string;
  /** Exact statuses where they matter; otherwise any 4xx. */
  expect?: Partial<Record<Variant, number>>;
  /** Also the §9 error code. */
  code?: Partial<Record<Variant, string>>;
  /** Hostile only for these (elsewhere the request is legitimate). */
  only?: Variant[];
}

const get = (target: string, extra = '') => `GET ${target} HTTP/1.1\r\n{H}${extra}\r\n`;
const ROWS: Row[] = [
  { name: 'GET // (a URL parser reads it as an empty host)', raw: get('//'), expect: { relay: 404, receiver: 404, 'receiver-token-auth': 404 } },
  { name: 'GET //@', raw: get('//@'), expect: { relay: 404, receiver: 404, 'receiver-token-auth': 404 } },
  { name: 'GET /\\', raw: get('/\\'), expect: { relay: 404, receiver: 404, 'receiver-token-auth': 404 } },
  { name: 'GET //healthz is not /healthz', raw: get('//healthz'), expect: { relay: 404, receiver: 404, 'receiver-token-auth': 404 } },
  { name: 'GET /\\evil.example/healthz is a path, not another host', raw: get('/\\evil.example/healthz'), expect: { relay: 404, receiver: 404, 'receiver-token-auth': 404 } },
  { name: 'GET //evil.example/?token=', raw: get('//evil.example/?token=wrong'), expect: { relay: 404, receiver: 404, 'receiver-token-auth': 404, 'receiver-token': 401 } },
  { name: 'bad %-escape in a device address', raw: get('/v1/devices/%E0%A4%A/readings'), expect: { relay: 404, receiver: 400, 'receiver-token-auth': 400 }, code: { receiver: 'bad-address', 'receiver-token-auth': 'bad-address' } },
  { name: 'lone % in a device address', raw: get('/v1/devices/%/readings'), expect: { receiver: 400, 'receiver-token-auth': 400 }, code: { receiver: 'bad-address' } },
  { name: 'bad %-escape in the history route', raw: get('/v1/devices/%zz/history'), expect: { receiver: 400, 'receiver-token-auth': 400 } },
  { name: 'bad %-escape in a query', raw: get('/v1/readings?after=%E0%A4%A&limit=%'), expect: { relay: 400, receiver: 400 }, code: { relay: 'bad-cursor' } },
  { name: 'bad %-escape in ?token=', raw: get('/?token=%E0%A4%A'), expect: { 'receiver-token': 401 }, only: ['receiver-token'] },
  { name: 'cursor out of range', raw: get(`/v1/devices/0x${'a'.repeat(40)}/readings?after=${'9'.repeat(41)}`) },
  { name: 'absolute-form target', raw: get('http://127.0.0.1/v1/devices/%E0%A4%A/readings'), expect: { relay: 404, receiver: 400, 'receiver-token-auth': 400 } },
  { name: 'absolute-form target naming another host (DNS rebinding)', raw: get('http://evil.example/v1/devices'), expect: { receiver: 403 }, only: ['receiver'] },
  { name: 'absolute-form target that is not a URL', raw: get('http://[::1/') },
  { name: 'absolute-form with another scheme', raw: get('ftp://127.0.0.1/healthz') },
  { name: 'asterisk-form', raw: get('*') },
  { name: 'OPTIONS *', raw: 'OPTIONS * HTTP/1.1\r\n{H}\r\n' },
  { name: 'authority-form (CONNECT)', raw: 'CONNECT 127.0.0.1:22 HTTP/1.1\r\n{H}\r\n', expect: { relay: 405, receiver: 405, 'receiver-token': 405 } },
  { name: 'authority-form with GET', raw: get('127.0.0.1:80') },
  { name: 'relative path', raw: get('healthz') },
  { name: 'space in the target', raw: get('/a b') },
  { name: 'DEL in the target', raw: get('/\x7f') },
  { name: 'NUL in the target', raw: get('/\x00') },
  { name: 'byte 0xff in the target', raw: get('/\xff') },
  { name: 'lower-case method', raw: 'get /healthz HTTP/1.1\r\n{H}\r\n' },
  { name: 'unknown method', raw: 'BREW /healthz HTTP/1.1\r\n{H}\r\n' },
  { name: 'POST where only GET is served', raw: 'POST /healthz HTTP/1.1\r\n{H}content-length: 2\r\n\r\n{}', expect: { relay: 405, receiver: 405, 'receiver-token-auth': 405 } },
  { name: 'HTTP/9.9', raw: 'GET /healthz HTTP/9.9\r\n{H}\r\n' },
  { name: 'HTTP/2 preface', raw: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' },
  { name: 'HTTP/1.1 without Host', raw: 'GET /healthz HTTP/1.1\r\n\r\n', expect: { relay: 400, receiver: 400, 'receiver-token': 400 } },
  { name: 'two Host headers', raw: get('/healthz', 'Host: other.example\r\n'), expect: { relay: 400, receiver: 400, 'receiver-token': 400 } },
  { name: 'Host not ours', raw: 'GET /v1/devices HTTP/1.1\r\nHost: evil.example\r\n\r\n', expect: { receiver: 403 } },
  { name: 'Content-Length and Transfer-Encoding', raw: 'POST /rpc HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n' },
  { name: 'two Content-Lengths', raw: 'POST /rpc HTTP/1.1\r\n{H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabc' },
  { name: 'bad chunk size', raw: 'POST /rpc HTTP/1.1\r\n{H}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n' },
  { name: 'CR in a header value', raw: get('/healthz', 'X-A: a\rb\r\n') },
  { name: 'header without a colon', raw: get('/healthz', 'no colon here\r\n') },
  { name: 'space before the colon', raw: get('/healthz', 'X-A : b\r\n') },
  { name: 'obsolete line folding', raw: get('/healthz', 'X-A: a\r\n b\r\n') },
  { name: 'a 20 KB header', raw: get('/healthz', `X-Big: ${'a'.repeat(20_000)}\r\n`), expect: { relay: 431, receiver: 431, 'receiver-token': 431 } },
  { name: '3000 small headers', raw: get('/healthz', Array.from({ length: 3000 }, (_, i) => `x${i}: y\r\n`).join('')), expect: { relay: 431, receiver: 431, 'receiver-token': 431 } },
  { name: 'a 20 KB target', raw: get(`/${'a'.repeat(20_000)}`), expect: { relay: 431, receiver: 431, 'receiver-token': 431 } },
  { name: 'an Expect we do not meet', raw: get('/healthz', 'Expect: 200-ok\r\n'), expect: { relay: 417, receiver: 417, 'receiver-token': 417 } },
  { name: 'Authorization not Bearer', raw: get('/v1/devices', 'Authorization: Basic Og==\r\n'), expect: { 'receiver-token': 401 }, only: ['receiver-token'] },
];

const hosts: Record<'relay' | 'receiver' | 'receiver-token', HostProcess> = {} as never;
beforeAll(async () => {
  [hosts.relay, hosts.receiver, hosts['receiver-token']] = await Promise.all([
    startHostProcess('relay'),
    startHostProcess('receiver'),
    startHostProcess('receiver', { host: '127.0.0.2', token: TOKEN }),
  ]);
});
afterAll(async () => {
  await Promise.all(Object.values(hosts).map((h) => h?.stop()));
});

const hostOf = (v: Variant) => hosts[v === 'receiver-token-auth' ? 'receiver-token' : v];
function render(v: Variant, raw: string): string {
  const h = hostOf(v);
  const auth = v === 'receiver-token-auth' ? `Authorization: Bearer ${TOKEN}\r\n` : '';
  return raw.replace('{H}', `Host: ${new URL(h.url).host}\r\n${auth}`);
}
const send = (v: Variant, raw: string): Promise<RawAnswer> => {
  const h = hostOf(v);
  return rawRequest(h.port, render(v, raw), { host: new URL(h.url).hostname, waitMs: 8000 });
};

async function healthy(v: Variant): Promise<void> {
  const h = hostOf(v);
  expect(h.exited()).toBeNull();
  const a = await send(v === 'receiver-token' ? 'receiver-token-auth' : v, get('/healthz'));
  expect(a.status).toBe(200);
  expect(JSON.parse(a.body).ok).toBe(true);
}

describe.each(['relay', 'receiver', 'receiver-token', 'receiver-token-auth'] as Variant[])('%s', (v) => {
  test.each(ROWS.filter((r) => !r.only || r.only.includes(v)).map((r) => [r.name, r] as const))('%s → 4xx with the §9 error body, and the host lives on', async (_name, row) => {
    const a = await send(v, row.raw);
    const why = `${row.name} on ${v}: ${a.status} ${a.body.slice(0, 200)} ${a.error ?? ''}\n${hostOf(v).stderr().slice(0, 2000)}`;
    if (row.expect?.[v] !== undefined) expect([a.status, why]).toEqual([row.expect[v], why]);
    else expect([a.status >= 400 && a.status < 500, why]).toEqual([true, why]);
    const body = JSON.parse(a.body);
    expect(Object.keys(body).sort()).toEqual(['error', 'message']);
    expect(typeof body.error).toBe('string');
    expect(typeof body.message).toBe('string');
    if (row.code?.[v]) expect(body.error).toBe(row.code[v]);
    await healthy(v);
  });
});

test('token login from a //host path redirects within this origin, never to another site', async () => {
  for (const target of [`//evil.example/?token=${TOKEN}`, `/\\evil.example/?token=${TOKEN}`, `///evil.example?token=${TOKEN}&a=1`]) {
    const a = await send('receiver-token', get(target));
    expect(a.status).toBe(303);
    expect(a.headers.location).toMatch(/^\/[^/\\]/);
    expect(a.headers.location).not.toContain(TOKEN);
  }
  await healthy('receiver-token');
});
