// The dashboard's routes on the receiver's HTTP server (http.ts asks here before answering 404): the page, its
// bundled assets, and two read-only JSON views of our own (views.ts). §9's routes are not touched.
import type { ServerResponse } from 'node:http';
import type { Store } from '../store.js';
import { asset } from './assets.js';
import { historyView, overviewView } from './views.js';

/** The page may load only its own script, style and data: device values never become markup or script. */
const PAGE_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** Answers `path` if it is a dashboard route and returns true; false leaves the request to the caller. */
export async function serveDashboard(path: string, res: ServerResponse, store: Store): Promise<boolean> {
  const file = path === '/' ? 'index.html' : /^\/dashboard\/(app\.js|app-style\.css)$/.exec(path)?.[1];
  if (file) {
    const a = (await asset(file))!;
    res.writeHead(200, { ...PAGE_HEADERS, 'content-type': a.type, 'content-length': a.body.length, 'cache-control': 'no-cache' });
    res.end(a.body);
    return true;
  }
  if (path === '/v1/dashboard') {
    json(res, 200, overviewView(store));
    return true;
  }
  const m = /^\/v1\/devices\/([^/]+)\/history$/.exec(path);
  if (m) {
    let addr = '';
    try {
      addr = decodeURIComponent(m[1]);
    } catch { /* malformed %-escape: refused as a bad address below */ }
    if (!/^0x[0-9a-fA-F]{40}$/.test(addr)) json(res, 400, { error: 'bad-address', message: 'device must be 0x and 40 hex digits' });
    else {
      const h = historyView(store, addr.toLowerCase());
      if (h) json(res, 200, h);
      else json(res, 404, { error: 'unknown-device', message: `no device ${addr} is known to this receiver` });
    }
    return true;
  }
  return false;
}
