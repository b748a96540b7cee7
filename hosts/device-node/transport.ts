/**
 * Transport over Node's fetch. The response body is read as a stream and the request
 * aborted once it passes MAX_RESPONSE_BYTES (PROTOCOL.md §5.3: a device drops, unparsed,
 * any relay response over 8 KiB): 'response-too-large'. Network failures and timeouts
 * are 'transport-error'.
 */
import { IotkxError } from '../../lib/errors.js';
import { MAX_RESPONSE_BYTES, type HttpResponse, type Transport } from '../../lib/platform.js';

export function nodeTransport(opts: { timeoutMs?: number } = {}): Transport {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  return {
    async request(method, url, body, contentType): Promise<HttpResponse> {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), timeoutMs);
      try {
        let res: Response;
        try {
          res = await fetch(url, { method, body: body ? Buffer.from(body) : undefined, headers: contentType ? { 'content-type': contentType } : {}, signal: ac.signal });
        } catch (e) {
          throw new IotkxError('transport-error', `${method} ${url}: ${(e as Error).message}`);
        }
        const declared = Number(res.headers.get('content-length') ?? NaN);
        if (declared > MAX_RESPONSE_BYTES) {
          ac.abort();
          throw new IotkxError('response-too-large', `${url}: response of ${declared} bytes`);
        }
        const chunks: Uint8Array[] = [];
        let n = 0;
        if (res.body) {
          const reader = res.body.getReader();
          try {
            for (;;) {
              const { done, value } = await reader.read();
              if (done) break;
              n += value.length;
              if (n > MAX_RESPONSE_BYTES) {
                ac.abort();
                throw new IotkxError('response-too-large', `${url}: response over ${MAX_RESPONSE_BYTES} bytes`);
              }
              chunks.push(value);
            }
          } catch (e) {
            if (e instanceof IotkxError) throw e;
            throw new IotkxError('transport-error', `${method} ${url}: ${(e as Error).message}`);
          }
        }
        return { status: res.status, body: new Uint8Array(Buffer.concat(chunks)) };
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
