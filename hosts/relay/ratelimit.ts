/**
 * Per-client token buckets (key: the remote address). A bucket holds up to `burst` tokens
 * and refills at `ratePerSec`; a request spends one token per JSON-RPC call. At most
 * `maxClients` buckets are kept (least recently used dropped first), so a flood of
 * addresses costs bounded memory; a forgotten client simply starts with a full bucket.
 */
import type { RateLimitOptions } from './config.js';

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  constructor(private readonly opts: RateLimitOptions, private readonly now: () => number = Date.now) {}

  /** Spend `cost` tokens of `key`'s bucket; false (and nothing spent) if it holds fewer. */
  take(key: string, cost = 1): boolean {
    const t = this.now();
    let b = this.buckets.get(key);
    if (b) {
      this.buckets.delete(key); // re-inserted below: Map order is our LRU order
      b.tokens = Math.min(this.opts.burst, b.tokens + ((t - b.at) * this.opts.ratePerSec) / 1000);
      b.at = t;
    } else {
      b = { tokens: this.opts.burst, at: t };
      if (this.buckets.size >= this.opts.maxClients) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
    }
    this.buckets.set(key, b);
    if (b.tokens < cost) return false;
    b.tokens -= cost;
    return true;
  }

  /** Seconds until `cost` tokens are available to `key` (for Retry-After). */
  retryAfter(key: string, cost = 1): number {
    const b = this.buckets.get(key);
    if (!b) return 0;
    return Math.max(1, Math.ceil(((cost - b.tokens) * 1000) / this.opts.ratePerSec / 1000));
  }
}
