/**
 * Optional spam filter for POST /v1/readings: accept envelopes only from devices that
 * have at least one KeyAccepted log on the contract (a device seals readings only after
 * §5.5 activation, so a genuine device always has one). Answers are cached; the check is
 * a hint of the chain through the same upstream, not a security boundary (§1: the relay
 * is trusted for nothing).
 */
import { bytesToHex } from '../../lib/bytes.js';
import { eventTopic } from '../../lib/keyexchange-abi.js';
import type { ChannelCheckOptions } from './config.js';
import type { Upstream } from './upstream.js';
import { UpstreamError } from './upstream.js';

const MAX_CACHED = 10_000;

export class ChannelCheck {
  private readonly cache = new Map<string, { ok: boolean; until: number }>();
  private readonly topic = `0x${bytesToHex(eventTopic('KeyAccepted'))}`;
  private readonly fromBlock: string;
  private readonly positiveTtlMs: number;
  private readonly negativeTtlMs: number;

  constructor(private readonly upstream: Upstream, private readonly contract: string, opts: ChannelCheckOptions = {}) {
    this.fromBlock = `0x${(opts.fromBlock ?? 0n).toString(16)}`;
    this.positiveTtlMs = opts.positiveTtlMs ?? 600_000;
    this.negativeTtlMs = opts.negativeTtlMs ?? 15_000;
  }

  /** True if `device` (20 bytes) has an accepted key on chain; throws UpstreamError if the node cannot tell. */
  async accepted(device: Uint8Array): Promise<boolean> {
    const key = bytesToHex(device);
    const hit = this.cache.get(key);
    if (hit && hit.until > Date.now()) return hit.ok;
    const answer = (await this.upstream.call({
      jsonrpc: '2.0',
      id: 1,
      method: 'eth_getLogs',
      params: [{ address: this.contract, fromBlock: this.fromBlock, toBlock: 'latest', topics: [this.topic, `0x${'00'.repeat(12)}${key}`] }],
    })) as { result?: unknown; error?: { message?: string } };
    if (!Array.isArray(answer?.result)) {
      throw new UpstreamError('bad-response', `upstream could not list logs: ${answer?.error?.message ?? 'no result'}`);
    }
    const ok = answer.result.length > 0;
    if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, { ok, until: Date.now() + (ok ? this.positiveTtlMs : this.negativeTtlMs) });
    return ok;
  }
}
