// Browser access to a receiver bound beyond loopback. §9 asks every request there for `Authorization: Bearer
// <token>`, which a browser cannot add to a page load; so `/?token=<token>` (checked like the header) answers
// with an HttpOnly, SameSite=Strict cookie and a redirect that drops the token from the address bar and
// history. The cookie holds an HMAC of the token, not the token: a copied cookie does not reveal it.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const COOKIE_NAME = 'iotkx_receiver';
/** HMAC label: this host's own format, not part of iotkx/1. */
const COOKIE_LABEL = 'iotkx-receiver/dashboard-cookie/v1';

export function cookieValue(token: string): string {
  return createHmac('sha256', token).update(COOKIE_LABEL).digest('hex');
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** True when the request carries our cookie for `token`. */
export function cookieAuthorised(req: IncomingMessage, token: string): boolean {
  const want = cookieValue(token);
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === COOKIE_NAME && same(part.slice(i + 1).trim(), want)) return true;
  }
  return false;
}

/** `?token=` matching `token`: set the cookie, redirect (303) to the same URL without it, and return true. */
export function tokenLogin(res: ServerResponse, url: URL, token: string): boolean {
  const given = url.searchParams.get('token');
  if (given === null || !same(given, token)) return false;
  const rest = new URLSearchParams(url.searchParams);
  rest.delete('token');
  const q = rest.toString();
  res.writeHead(303, {
    // One leading slash only: `//host/...` (or `/\\host`) as a Location would send the browser to another site.
    location: `/${url.pathname.replace(/^[/\\]+/, '')}${q ? `?${q}` : ''}`,
    'set-cookie': `${COOKIE_NAME}=${cookieValue(token)}; HttpOnly; SameSite=Strict; Path=/`,
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
    'content-length': '0',
  });
  res.end();
  return true;
}

/**
 * On loopback no token is asked, so a web page elsewhere could reach us through DNS rebinding (its own name
 * re-pointed at 127.0.0.1) and read decrypted readings: answer only requests addressed to a loopback name.
 * A request without Host (HTTP/1.0 tools) is not a browser's and passes.
 */
export function loopbackHostOk(req: IncomingMessage): boolean {
  const host = req.headers.host;
  if (host === undefined) return true;
  const name = /^(\[[^\]]*\]|[^:]*)(:[0-9]+)?$/.exec(host.toLowerCase())?.[1];
  return name === '127.0.0.1' || name === 'localhost' || name === '[::1]';
}
