/**
 * The relay's spam filter for POST /v1/readings, on by default: accept envelopes only
 * from devices with a DeviceEnrolled log on the contract (to any receiver). A genuine
 * device seals readings only after §5.5 activation, which needs an enrolment first, so a
 * genuine device always passes; an envelope for a made-up address is refused (403
 * no-channel) without touching the chain. This is a hint of the chain, not a security
 * boundary (§1: the relay is trusted for nothing; the receiver authenticates).
 *
 * Cost (decided and measured, issue 15 item 5; docs/DECISIONS.md "Relay retention and
 * channel check"): the index is the set of enrolled devices, built once from the
 * contract's DeviceEnrolled logs (eth_getLogs in chunks of `chunkBlocks` from
 * `fromBlock`), persisted in the relay's SQLite file with the last block scanned, and
 * kept up to date by a tail scan (eth_blockNumber + eth_getLogs of the new blocks)
 * every `tailMs`. A POST is a set lookup: no upstream call for a known device, and for
 * an unknown one at most a shared tail scan when the index is older than `refreshMs`
 * (a device enrolled a moment ago passes without waiting for the timer). A flood of
 * envelopes for random devices thus costs the upstream at most one tail scan per
 * `refreshMs`, where the former check (KeyAccepted logs per address, full range, 15 s
 * negative cache) cost one full-range eth_getLogs per new address.
 * Revocation is not tracked: a revoked device still passes (its readings are refused by
 * the receiver, §5.6); the set only grows, by enrolments, each of which costs gas.
 */
import { bytesToHex, hexToBytes } from '../../lib/bytes.js';
import { eventTopic } from '../../lib/keyexchange-abi.js';
import type { ChannelCheckOptions } from './config.js';
import type { EnvelopeStore } from './store.js';
import type { Upstream } from './upstream.js';
import { UpstreamError } from './upstream.js';

export const DEFAULT_CHANNEL_CHECK = Object.freeze({ fromBlock: 0n, chunkBlocks: 10_000, tailMs: 5_000, refreshMs: 2_000 });

const HEX_QUANTITY = /^0x[0-9a-fA-F]{1,16}$/;
const TOPIC = /^0x[0-9a-fA-F]{64}$/;

export class ChannelCheck {
  private readonly known = new Set<string>();
  private readonly topic = `0x${bytesToHex(eventTopic('DeviceEnrolled'))}`;
  private readonly opts: Required<ChannelCheckOptions>;
  /** Last block scanned (inclusive); undefined before the first scan. */
  private scanned: bigint | undefined;
  private scannedAt = -Infinity;
  private scanning: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Upstream calls made (tests and the bench read it). */
  upstreamCalls = 0;

  constructor(private readonly upstream: Upstream, private readonly contract: string, private readonly store: EnvelopeStore, opts: ChannelCheckOptions = {}) {
    this.opts = { ...DEFAULT_CHANNEL_CHECK, ...opts };
    const saved = store.loadEnrolled(contract);
    for (const d of saved.devices) this.known.add(bytesToHex(d));
    this.scanned = saved.scanned;
  }

  /** Start the tail scans (the first one right away). */
  start(): void {
    const tick = () => {
      this.refresh().catch(() => undefined).finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(tick, this.opts.tailMs).unref();
      });
    };
    this.timer = setTimeout(tick, 0).unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  get devices(): number { return this.known.size; }

  /** True if `device` (20 bytes) was ever enrolled; throws UpstreamError if the index cannot be brought up to date. */
  async accepted(device: Uint8Array): Promise<boolean> {
    const key = bytesToHex(device);
    if (this.known.has(key)) return true;
    if (this.scanned === undefined || Date.now() - this.scannedAt >= this.opts.refreshMs) await this.refresh();
    return this.known.has(key);
  }

  /** One scan up to the head (single flight: concurrent callers share it). */
  refresh(): Promise<void> {
    this.scanning ??= this.scan().finally(() => { this.scanning = undefined; });
    return this.scanning;
  }

  private async rpc(method: string, params: unknown[]): Promise<unknown> {
    this.upstreamCalls++;
    const answer = (await this.upstream.call({ jsonrpc: '2.0', id: 1, method, params })) as { result?: unknown; error?: { message?: string } };
    if (answer?.result === undefined) throw new UpstreamError('bad-response', `upstream ${method}: ${answer?.error?.message ?? 'no result'}`);
    return answer.result;
  }

  private async scan(): Promise<void> {
    const started = Date.now();
    const head = await this.rpc('eth_blockNumber', []);
    if (typeof head !== 'string' || !HEX_QUANTITY.test(head)) throw new UpstreamError('bad-response', 'upstream eth_blockNumber: not a quantity');
    const to = BigInt(head);
    let from = this.scanned === undefined ? this.opts.fromBlock : this.scanned + 1n;
    while (from <= to) {
      const end = from + BigInt(this.opts.chunkBlocks) - 1n < to ? from + BigInt(this.opts.chunkBlocks) - 1n : to;
      const logs = await this.rpc('eth_getLogs', [{ address: this.contract, fromBlock: `0x${from.toString(16)}`, toBlock: `0x${end.toString(16)}`, topics: [this.topic] }]);
      if (!Array.isArray(logs)) throw new UpstreamError('bad-response', 'upstream eth_getLogs: not a list');
      const found: Uint8Array[] = [];
      for (const l of logs as Array<{ topics?: unknown; address?: unknown }>) {
        const t = Array.isArray(l?.topics) ? l.topics : [];
        // DeviceEnrolled(address indexed receiver, address indexed device, address by): topics[2] is the device.
        if (typeof l?.address !== 'string' || l.address.toLowerCase() !== this.contract.toLowerCase()) continue;
        if (t.length !== 3 || t[0] !== this.topic || typeof t[2] !== 'string' || !TOPIC.test(t[2])) continue;
        const hex = t[2].slice(26).toLowerCase();
        if (!this.known.has(hex)) {
          this.known.add(hex);
          found.push(hexToBytes(hex));
        }
      }
      this.store.addEnrolled(this.contract, found, end);
      this.scanned = end;
      from = end + 1n;
    }
    this.scannedAt = started;
  }
}
