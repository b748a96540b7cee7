// The receiver's side of the key exchange (PROTOCOL.md §5.4): watch KeyOffered logs addressed to this receiver
// at a confirmation depth, verify, persist K, then accept or reject. Everything is driven from persisted state:
// logs only create rows; each row then moves through
//   seen → keyStored → acceptSent(tx) → accepted
//   seen → rejectPending(reason) → rejectSent(tx) → rejected
//   keyStored → expired | superseded | rejectPending(3)
// and every step re-reads the chain (channel()) before acting, so a restart at any point neither accepts an
// offer twice nor loses its K (K is stored before the acceptance is signed; one (device, epoch) has one K).
import { decodeEventLog, encodeEventTopics, getAddress, pad as padHex, type Address, type Hex, type Log } from 'viem';
import { hexToBytes, toHex } from '../../lib/bytes.js';
import { unwrapKey } from '../../lib/ecies.js';
import { keyAcceptanceDigest, signTyped } from '../../lib/eip712.js';
import { channelId, commitmentOf, proofOf } from '../../lib/ids.js';
import { keyExchangeAbi, type ChannelView, type ReceiverChain } from './chain.js';
import { domainOf, encKeyFor, recordKeyVersion } from './keyrecord.js';
import type { ReceiverKeys } from './keys.js';
import type { ExchangeOutcome, ReceiverMetrics } from './metrics.js';
import { pad, unpad, type Store } from './store.js';

export interface ExchangeConfig {
  /** Blocks a log must be buried under before it is acted on (0 = the head). Default 2. */
  confirmations: number;
  /** First block to scan (the deployment block). */
  startBlock: bigint;
  /** On a reorg deeper than `confirmations`, re-scan this many blocks below the last processed one. Default 64. */
  reorgRescanBlocks: number;
  /** eth_getLogs range per request. Default 2000. */
  logChunkBlocks: number;
  /** Accept only if at least this many blocks of the offer's time to live remain (§5.4), else let it expire. Default 2. */
  minRemainingBlocks: number;
  /** At most `max` acceptances per device per `windowMs` (§5.4 rate limit); an offer over it waits, then expires. */
  acceptRate: { max: number; windowMs: number };
  /** Give up on a row after this many failed transaction attempts. Default 5. */
  maxAttempts: number;
  /**
   * A node that produces no blocks by itself (anvil without --block-time, ganache or Hardhat automine) never
   * buries a log or a receipt unless someone else sends a transaction. When the head has not moved for this
   * long (ms, measured by this receiver), it acts at depth 0 instead of waiting, and says so (status().reason).
   * 0 = always wait for `confirmations`. Default 30 s: above a missed slot or two of a live chain.
   */
  idleDepthZeroMs: number;
}

/** What the watcher waits for, and why (the /healthz `chain` field, the dashboard status line, the log). */
export interface WatcherStatus {
  /** Head block of the node at the last pass. */
  head: number | null;
  /** Seconds since this receiver saw the head move. */
  headIdleSec: number | null;
  confirmations: number;
  /** Depth the last pass acted at: `confirmations`, or 0 while the node produces no blocks by itself. */
  actingDepth: number;
  /** The node produced no block for `idleDepthZeroMs` (a node that mines only when a transaction arrives). */
  idle: boolean;
  /** Offers seen in blocks not yet deep enough, and our transactions whose receipts are not yet deep enough. */
  waiting: { kind: 'offer' | 'accept' | 'reject'; device: string; epoch: string; block: number; depth: number }[];
  /** One sentence: why the receiver is waiting (null when it waits for nothing). */
  reason: string | null;
  updatedAt: string;
}

/** The watcher status persisted by the last pass (store meta `watcher`), for the HTTP surfaces. */
export function watcherStatus(store: Store): WatcherStatus | null {
  try {
    return JSON.parse(store.getMeta('watcher') ?? 'null') as WatcherStatus | null;
  } catch {
    return null;
  }
}

export const DEFAULT_EXCHANGE_CONFIG: Omit<ExchangeConfig, 'startBlock'> = {
  confirmations: 2,
  reorgRescanBlocks: 64,
  logChunkBlocks: 2000,
  minRemainingBlocks: 2,
  acceptRate: { max: 12, windowMs: 3_600_000 },
  maxAttempts: 5,
  idleDepthZeroMs: 30_000,
};

/** Test hooks: throw from one to simulate a crash at that point. */
export interface ExchangeHooks {
  afterKeyStored?(device: Address, epoch: bigint): void | Promise<void>;
  beforeBroadcast?(kind: 'accept' | 'reject', device: Address, epoch: bigint): void | Promise<void>;
}

interface EpochRow {
  device: string; epoch: string; tx_hash: string; key_version: number; wrapped: string; commitment: string;
  state: string; reason: number | null; action_tx: string | null; action_raw: string | null; action_nonce: number | null;
  action_ms: number | null; attempts: number; k_enc: Buffer | null; signed_block: number | null;
}

const ACTIVE_STATES = ['seen', 'keyStored', 'acceptSent', 'rejectPending', 'rejectSent'];
const REASON_OUTCOME: Record<number, ExchangeOutcome> = { 1: 'rejected_undecryptable', 2: 'rejected_commitment', 3: 'rejected_policy' };

export class Exchange {
  private readonly me: Address;
  private ttl: bigint | undefined;
  /** Called when an epoch becomes accepted (ingestion retries envelopes parked for it). */
  onAccepted: (device: string, epoch: bigint) => void = () => {};

  constructor(
    private readonly chain: ReceiverChain,
    private readonly keys: ReceiverKeys,
    private readonly store: Store,
    private readonly metrics: ReceiverMetrics,
    private readonly cfg: ExchangeConfig,
    private readonly hooks: ExchangeHooks = {},
    private readonly log: (msg: string, extra?: Record<string, unknown>) => void = () => {},
  ) {
    this.me = chain.address;
  }

  /** The head this receiver last saw and when it last saw it move (wall clock of this process). */
  private headSeen: { head: bigint; sinceMs: number } | undefined;
  /** Depth the current pass acts at (confirmations, or 0 on an idle node). */
  private depth = 0;
  private waits: WatcherStatus['waiting'] = [];
  private wasIdle = false;

  /** One pass: scan confirmed logs, then advance every unfinished offer. */
  async tick(): Promise<void> {
    try {
      await this.pass();
    } catch (e) {
      // Say why nothing moves: the last status stays, with the failure as its reason.
      const st = watcherStatus(this.store);
      this.store.setMeta('watcher', JSON.stringify({
        head: null, headIdleSec: null, confirmations: this.cfg.confirmations, actingDepth: this.depth, idle: false, waiting: [],
        ...st, reason: `watcher pass failed: ${(e as Error).message.split('\n')[0]}`, updatedAt: new Date().toISOString(),
      } satisfies WatcherStatus));
      throw e;
    }
  }

  private async pass(): Promise<void> {
    this.ttl ??= await this.chain.offerTtlBlocks();
    const head = await this.chain.client.getBlockNumber();
    const now = Date.now();
    if (!this.headSeen || this.headSeen.head !== head) this.headSeen = { head, sinceMs: now };
    const idleMs = now - this.headSeen.sinceMs;
    const idle = this.cfg.confirmations > 0 && this.cfg.idleDepthZeroMs > 0 && idleMs >= this.cfg.idleDepthZeroMs;
    this.depth = idle ? 0 : this.cfg.confirmations;
    this.waits = [];
    if (this.cfg.confirmations > 0) await this.peekUnconfirmed(head);
    if (idle !== this.wasIdle) {
      this.log(idle
        ? `no block for ${Math.round(idleMs / 1000)} s: the node produces no blocks by itself; acting at depth 0 instead of ${this.cfg.confirmations}`
        : 'the node produces blocks again: acting at the confirmation depth', { head: String(head), confirmations: this.cfg.confirmations });
      this.wasIdle = idle;
    }
    await this.scan(head);
    await this.advanceAll();
    this.publishStatus(head, idleMs, idle);
  }

  /** The current status (also persisted by every pass: watcherStatus(store)). */
  status(): WatcherStatus | null {
    return watcherStatus(this.store);
  }

  private publishStatus(head: bigint, idleMs: number, idle: boolean): void {
    const waits = this.waits;
    let reason: string | null = null;
    if (waits.length > 0) {
      const w = waits[0];
      const what = `${w.kind === 'offer' ? 'the offer' : `our ${w.kind === 'accept' ? 'acceptance' : 'rejection'}`} of ${w.device} epoch ${w.epoch} ` +
        `(block ${w.block}, ${w.depth} deep)${waits.length > 1 ? ` and ${waits.length - 1} more` : ''}`;
      const idleSec = Math.round(idleMs / 1000);
      reason = `waiting for ${this.cfg.confirmations} confirmation${this.cfg.confirmations === 1 ? '' : 's'}: ${what}; head ${head}` +
        (idleSec >= 5 ? `, no new block for ${idleSec} s` : '') +
        (this.cfg.idleDepthZeroMs > 0
          ? ` (if the node produces no blocks by itself, the receiver acts at depth 0 after ${Math.round(this.cfg.idleDepthZeroMs / 1000)} s without a block)`
          : ' (depth-0 fallback off: mine blocks, give the node a block time, or lower --confirmations)');
    } else if (idle) {
      reason = `the node has produced no block for ${Math.round(idleMs / 1000)} s (it mines only when a transaction arrives?): acting at depth 0`;
    }
    const st: WatcherStatus = {
      head: Number(head), headIdleSec: Math.floor(idleMs / 1000), confirmations: this.cfg.confirmations, actingDepth: this.depth,
      idle, waiting: waits, reason, updatedAt: new Date().toISOString(),
    };
    this.store.setMeta('watcher', JSON.stringify(st));
  }

  /** KeyOffered logs for us in the blocks above the depth: what the receiver is waiting for (status only). */
  private async peekUnconfirmed(head: bigint): Promise<void> {
    const from = head - BigInt(this.cfg.confirmations) + 1n;
    const cur = this.cursor();
    const start = cur && cur.block + 1n > from ? cur.block + 1n : from;
    if (start > head || start < 0n) return;
    const receiverTopic = padHex(this.me.toLowerCase() as Hex, { size: 32 });
    const topic = encodeEventTopics({ abi: keyExchangeAbi, eventName: 'KeyOffered' } as Parameters<typeof encodeEventTopics>[0])[0];
    const logs = await this.chain.client.request({
      method: 'eth_getLogs',
      params: [{ address: this.chain.contract, fromBlock: `0x${start.toString(16)}`, toBlock: `0x${head.toString(16)}`, topics: [topic, null, receiverTopic] }],
    }).catch(() => []) as Log[];
    for (const l of logs) {
      try {
        const ev = decodeEventLog({ abi: keyExchangeAbi, data: l.data, topics: l.topics as [Hex, ...Hex[]] });
        if (ev.eventName !== 'KeyOffered') continue;
        const block = BigInt(l.blockNumber as unknown as Hex);
        if (block <= head - BigInt(this.depth)) continue; // acted on in this pass
        this.waits.push({ kind: 'offer', device: ev.args.device.toLowerCase(), epoch: String(ev.args.epoch), block: Number(block), depth: Number(head - block) });
      } catch {
        // not ours
      }
    }
  }

  // ------------------------------------------------------------------ log scanning

  private cursor(): { block: bigint; hash: Hex | null } | undefined {
    const v = this.store.getMeta('cursor');
    if (!v) return undefined;
    const j = JSON.parse(v) as { block: string; hash: Hex | null };
    return { block: BigInt(j.block), hash: j.hash };
  }

  private async scan(head: bigint): Promise<void> {
    const safe = head - BigInt(this.depth);
    let cur = this.cursor();
    if (cur?.hash) {
      // Reorg check: the last processed block must still be on our node's chain.
      const blk = await this.chain.client.getBlock({ blockNumber: cur.block }).catch(() => undefined);
      if (!blk || blk.hash !== cur.hash) {
        const from = cur.block - BigInt(this.cfg.reorgRescanBlocks);
        this.metrics.reorgs.inc();
        this.log('reorg: re-scanning', { from: String(from), was: String(cur.block) });
        cur = { block: from < this.cfg.startBlock - 1n ? this.cfg.startBlock - 1n : from, hash: null };
        this.store.db.transaction(() => {
          // An acceptance in the re-scanned range may have been undone: re-check it against the chain (the K
          // stays; settle() marks it accepted again or re-sends the same acceptance).
          this.store.db.prepare("UPDATE epochs SET state = 'keyStored' WHERE state = 'accepted' AND accepted_block > ? AND k_enc IS NOT NULL")
            .run(Number(cur!.block));
          this.store.setMeta('cursor', JSON.stringify({ block: cur!.block.toString(), hash: null }));
        })();
      }
    }
    let from = cur ? cur.block + 1n : this.cfg.startBlock;
    while (from <= safe) {
      const to = from + BigInt(this.cfg.logChunkBlocks) - 1n < safe ? from + BigInt(this.cfg.logChunkBlocks) - 1n : safe;
      const logs = await this.fetchLogs(from, to);
      const end = await this.chain.client.getBlock({ blockNumber: to });
      this.store.db.transaction(() => {
        for (const l of logs) this.handleLog(l);
        this.store.setMeta('cursor', JSON.stringify({ block: to.toString(), hash: end.hash }));
      })();
      this.metrics.lastBlock.set(Number(to));
      from = to + 1n;
    }
  }

  private async fetchLogs(from: bigint, to: bigint): Promise<Log[]> {
    const receiverTopic = padHex(this.me.toLowerCase() as Hex, { size: 32 });
    const topicOf = (eventName: 'ReceiverKeySet' | 'DeviceEnrolled' | 'DeviceRevoked' | 'KeyOffered') =>
      encodeEventTopics({ abi: keyExchangeAbi, eventName } as Parameters<typeof encodeEventTopics>[0])[0];
    const q = (topics: (Hex | Hex[] | null)[]) => this.chain.client.request({
      method: 'eth_getLogs',
      params: [{ address: this.chain.contract, fromBlock: `0x${from.toString(16)}`, toBlock: `0x${to.toString(16)}`, topics }],
    }) as Promise<Log[]>;
    // receiver is topic 1 of the first three events and topic 2 of KeyOffered: two queries.
    const [a, b] = await Promise.all([
      q([[topicOf('ReceiverKeySet'), topicOf('DeviceEnrolled'), topicOf('DeviceRevoked')], receiverTopic]),
      q([topicOf('KeyOffered'), null, receiverTopic]),
    ]);
    const pos = (l: Log) => [BigInt(l.blockNumber as unknown as Hex), BigInt(l.logIndex as unknown as Hex)] as const;
    return [...a, ...b].sort((x, y) => {
      const [bx, ix] = pos(x);
      const [by, iy] = pos(y);
      return bx !== by ? (bx < by ? -1 : 1) : ix < iy ? -1 : ix > iy ? 1 : 0;
    });
  }

  private handleLog(l: Log): void {
    let ev;
    try {
      ev = decodeEventLog({ abi: keyExchangeAbi, data: l.data, topics: l.topics as [Hex, ...Hex[]] });
    } catch {
      return; // not one of ours (cannot happen with the topic filter; a lying node is not in our threat model)
    }
    const block = BigInt(l.blockNumber as unknown as Hex);
    const index = BigInt(l.logIndex as unknown as Hex);
    const position = `${pad(block)}:${pad(index)}`;
    const now = Date.now();
    const db = this.store.db;
    switch (ev.eventName) {
      case 'ReceiverKeySet':
        recordKeyVersion(this.store, ev.args.version, ev.args.encKey);
        break;
      case 'DeviceEnrolled':
      case 'DeviceRevoked': {
        const device = ev.args.device.toLowerCase();
        const status = ev.eventName === 'DeviceEnrolled' ? 'enrolled' : 'revoked';
        db.prepare(`INSERT INTO devices (device, status, status_pos, first_seen_ms) VALUES (?, ?, ?, ?)
          ON CONFLICT(device) DO UPDATE SET status = excluded.status, status_pos = excluded.status_pos
          WHERE excluded.status_pos >= devices.status_pos`).run(device, status, position, now);
        if (status === 'revoked') {
          db.prepare('UPDATE devices SET revoked_block = MAX(COALESCE(revoked_block, 0), ?) WHERE device = ?').run(Number(block), device);
        }
        break;
      }
      case 'KeyOffered': {
        const device = ev.args.device.toLowerCase();
        const epoch = ev.args.epoch;
        const txHash = (l.transactionHash as Hex).toLowerCase();
        const commitment = ev.args.commitment.toLowerCase();
        db.prepare('INSERT INTO devices (device, status, status_pos, first_seen_ms) VALUES (?, ?, ?, ?) ON CONFLICT(device) DO NOTHING')
          .run(device, 'unknown', '', now);
        const fresh = db.prepare(`INSERT OR IGNORE INTO offer_logs (device, epoch, tx_hash, block_number, log_index, key_version, wrapped, commitment)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?)`).run(device, pad(epoch), txHash, Number(block), Number(index), ev.args.keyVersion,
          ev.args.wrappedKey.toLowerCase(), commitment).changes > 0;
        if (!fresh) break; // re-scan after a reorg or restart: idempotent by (device, epoch, tx hash)
        const row = db.prepare('SELECT state, commitment FROM epochs WHERE device = ? AND epoch = ?').get(device, pad(epoch)) as
          { state: string; commitment: string } | undefined;
        if (!row) {
          db.prepare(`INSERT INTO epochs (device, epoch, tx_hash, key_version, wrapped, commitment, state, created_ms, updated_ms)
            VALUES (?, ?, ?, ?, ?, ?, 'seen', ?, ?)`).run(device, pad(epoch), txHash, ev.args.keyVersion, ev.args.wrappedKey.toLowerCase(),
            commitment, now, now);
        } else if (row.commitment !== commitment) {
          // A second, different offer for an epoch we already hold: one epoch never gets a second K (§5.3).
          // We keep nothing from it and refuse the epoch (reason 3, policy) unless it is already accepted.
          db.prepare("UPDATE offer_logs SET note = 'conflict' WHERE device = ? AND epoch = ? AND tx_hash = ?").run(device, pad(epoch), txHash);
          if (row.state !== 'accepted') {
            db.prepare("UPDATE epochs SET state = 'rejectPending', reason = 3, updated_ms = ? WHERE device = ? AND epoch = ?")
              .run(now, device, pad(epoch));
          }
          this.log('conflicting offer for an epoch already seen', { device, epoch: String(epoch), txHash });
        }
        // Same commitment, other tx hash: a fee-bumped re-send of the same offer; the row stands.
        break;
      }
    }
  }

  // ------------------------------------------------------------------ the state machine

  private async advanceAll(): Promise<void> {
    const rows = this.store.db.prepare(
      `SELECT * FROM epochs WHERE state IN (${ACTIVE_STATES.map(() => '?').join(',')}) ORDER BY device, epoch`,
    ).all(...ACTIVE_STATES) as EpochRow[];
    for (const row of rows) {
      try {
        await this.advance(row);
      } catch (e) {
        this.metrics.errors.inc({ stage: `exchange-${row.state}` });
        this.log('exchange step failed', { device: row.device, epoch: row.epoch, state: row.state, error: (e as Error).message });
      }
    }
  }

  private set(row: EpochRow, fields: Partial<EpochRow>): void {
    const cols = Object.keys(fields);
    this.store.db.prepare(`UPDATE epochs SET ${cols.map((c) => `${c} = ?`).join(', ')}, updated_ms = ? WHERE device = ? AND epoch = ?`)
      .run(...cols.map((c) => (fields as Record<string, unknown>)[c]), Date.now(), row.device, row.epoch);
    Object.assign(row, fields);
  }

  private finish(row: EpochRow, state: 'accepted' | 'rejected' | 'expired' | 'superseded' | 'failed', extra: Partial<EpochRow> & { accepted_block?: number } = {}): void {
    const { accepted_block, ...rest } = extra;
    this.set(row, { state, ...rest } as Partial<EpochRow>);
    if (accepted_block !== undefined) {
      this.store.db.prepare('UPDATE epochs SET accepted_block = ? WHERE device = ? AND epoch = ?').run(accepted_block, row.device, row.epoch);
    }
    const outcome: ExchangeOutcome = state === 'rejected' ? REASON_OUTCOME[row.reason ?? 3] : state;
    this.metrics.exchanges.inc({ outcome });
    this.log(`offer ${state}`, { device: row.device, epoch: String(unpad(row.epoch)), reason: row.reason ?? undefined });
    if (state === 'accepted') this.onAccepted(row.device, unpad(row.epoch));
  }

  private async advance(row: EpochRow): Promise<void> {
    // Loop so one tick can go seen → keyStored → acceptSent.
    for (let guard = 0; guard < 4; guard++) {
      const before = row.state;
      switch (row.state) {
        case 'seen': await this.onSeen(row); break;
        case 'keyStored': await this.onKeyStored(row); break;
        case 'acceptSent': await this.onSent(row, 'accept'); break;
        case 'rejectPending': await this.onRejectPending(row); break;
        case 'rejectSent': await this.onSent(row, 'reject'); break;
        default: return;
      }
      if (row.state === before || row.state === 'acceptSent' || row.state === 'rejectSent') return;
    }
  }

  private reject(row: EpochRow, reason: 1 | 2 | 3, why: string): void {
    this.log('rejecting offer', { device: row.device, epoch: String(unpad(row.epoch)), reason, why });
    this.set(row, { state: 'rejectPending', reason });
  }

  private async onSeen(row: EpochRow): Promise<void> {
    const device = getAddress(row.device);
    const epoch = unpad(row.epoch);
    // §5.4: the offer's transaction must have been sent by D.
    const tx = await this.chain.transaction(row.tx_hash as Hex);
    if (!tx) return; // not (or no longer) on our node's chain: wait
    if (tx.from.toLowerCase() !== row.device) return this.reject(row, 3, 'offer transaction not sent by the device');
    const e = encKeyFor(this.keys, this.store, row.key_version);
    if (!e) return this.reject(row, 1, `no encryption key of version ${row.key_version}`);
    let K: Uint8Array;
    try {
      K = unwrapKey(e.secretKey, hexToBytes(row.wrapped));
    } catch (err) {
      return this.reject(row, 1, `unwrap failed: ${(err as Error).message}`);
    }
    if (K.length !== 32) return this.reject(row, 1, `wrapped key holds ${K.length} bytes, not 32`);
    const chId = channelId(BigInt(this.chain.chainId), hexToBytes(this.chain.contract), hexToBytes(row.device), hexToBytes(this.me));
    const proof = proofOf(K, chId, epoch);
    if (toHex(commitmentOf(proof)) !== row.commitment) return this.reject(row, 2, 'keccak(proof) != commitment');
    // Policy: the device must still be enrolled to us (§5.6: a revoked device's pending offer is refused).
    const ch = await this.chain.channel(device);
    if (!ch.enrolled) return this.reject(row, 3, 'device not enrolled');
    // Persist (D, epoch, K) first (§5.4), in one transaction with the state change.
    this.set(row, { state: 'keyStored', k_enc: this.store.sealK(row.device, epoch, K) });
    K.fill(0);
    await this.hooks.afterKeyStored?.(device, epoch);
  }

  private acceptsInWindow(device: string): number {
    const since = Date.now() - this.cfg.acceptRate.windowMs;
    const r = this.store.db.prepare(
      "SELECT COUNT(*) AS n FROM epochs WHERE device = ? AND state IN ('acceptSent', 'accepted') AND action_ms >= ?",
    ).get(device, since) as { n: number };
    return r.n;
  }

  /** Resolves the row from the chain's view; returns the channel if the offer is still open for us. */
  private async settle(row: EpochRow): Promise<{ ch: ChannelView; head: bigint } | undefined> {
    const epoch = unpad(row.epoch);
    const [ch, head] = await Promise.all([this.chain.channel(getAddress(row.device)), this.chain.client.getBlockNumber()]);
    if (ch.epoch < epoch) return undefined; // our node does not see the offer (reorg): wait for it
    if (ch.epoch > epoch) {
      if (row.state === 'acceptSent') return undefined; // let the receipt decide
      this.finish(row, 'superseded');
      return undefined;
    }
    if (ch.commitment.toLowerCase() !== row.commitment) {
      this.reject(row, 3, 'on-chain commitment differs from the offer we unwrapped');
      return undefined;
    }
    if (ch.state === 2) {
      this.finish(row, 'accepted', { accepted_block: Number(ch.acceptedAt) });
      return undefined;
    }
    if (ch.state === 3) {
      this.finish(row, 'rejected');
      return undefined;
    }
    return { ch, head };
  }

  private async onKeyStored(row: EpochRow): Promise<void> {
    const open = await this.settle(row);
    if (!open) return;
    const { ch, head } = open;
    const epoch = unpad(row.epoch);
    if (!ch.enrolled) return this.reject(row, 3, 'device revoked');
    const remaining = ch.offeredAt + this.ttl! - head;
    if (remaining < BigInt(this.cfg.minRemainingBlocks)) return this.finish(row, 'expired');
    if (this.acceptsInWindow(row.device) >= this.cfg.acceptRate.max) {
      this.log('accept deferred: rate limit', { device: row.device, epoch: String(epoch) });
      return;
    }
    const K = this.store.openK(row.device, epoch, row.k_enc!);
    const chId = channelId(BigInt(this.chain.chainId), hexToBytes(this.chain.contract), hexToBytes(row.device), hexToBytes(this.me));
    const proof = proofOf(K, chId, epoch);
    K.fill(0);
    const digest = keyAcceptanceDigest(domainOf(this.chain), { device: hexToBytes(row.device), receiver: hexToBytes(this.me), epoch, proof });
    const sig = toHex(signTyped(digest, this.keys.accountKey));
    await this.send(row, 'accept', this.chain.acceptData(getAddress(row.device), epoch, toHex(proof), sig));
  }

  private async onRejectPending(row: EpochRow): Promise<void> {
    const epoch = unpad(row.epoch);
    const ch = await this.chain.channel(getAddress(row.device));
    if (ch.epoch !== epoch || ch.state !== 1) {
      // Nothing left to reject on chain (superseded, or already settled): the refusal stands locally. K goes,
      // unless we signed an acceptance for it (§5.6: then the epoch counts as accepted for readings).
      if (row.signed_block === null) this.set(row, { k_enc: null });
      return this.finish(row, ch.epoch === epoch && ch.state === 2 ? 'accepted' : 'rejected');
    }
    await this.send(row, 'reject', this.chain.rejectData(getAddress(row.device), epoch, row.reason ?? 3));
  }

  private async send(row: EpochRow, kind: 'accept' | 'reject', data: Hex): Promise<void> {
    let tx;
    try {
      tx = await this.chain.sign(data);
    } catch (e) {
      // Gas estimation reverted (state changed under us) or the node failed: count and retry next tick.
      this.set(row, { attempts: row.attempts + 1 });
      if (row.attempts >= this.cfg.maxAttempts) return this.finish(row, 'failed');
      throw e;
    }
    // Persist the signed bytes before broadcasting: a restart re-sends these exact bytes. From here on an
    // accepted-for-readings epoch (§5.6): its envelopes are taken whatever becomes of this transaction.
    this.set(row, {
      state: kind === 'accept' ? 'acceptSent' : 'rejectSent', action_tx: tx.hash, action_raw: tx.raw, action_nonce: tx.nonce, action_ms: Date.now(),
      ...(kind === 'accept' && row.signed_block === null ? { signed_block: Number(this.headSeen?.head ?? 0n) } : {}),
    });
    await this.hooks.beforeBroadcast?.(kind, getAddress(row.device), unpad(row.epoch));
    await this.chain.broadcast(tx.raw);
  }

  private async onSent(row: EpochRow, kind: 'accept' | 'reject'): Promise<void> {
    const back = kind === 'accept' ? 'keyStored' : 'rejectPending';
    const receipt = await this.chain.receipt(row.action_tx as Hex);
    const head = await this.chain.client.getBlockNumber();
    if (receipt) {
      if (head - receipt.blockNumber < BigInt(this.depth)) { // not deep enough yet
        this.waits.push({ kind, device: row.device, epoch: String(unpad(row.epoch)), block: Number(receipt.blockNumber), depth: Number(head - receipt.blockNumber) });
        return;
      }
      if (receipt.status === 'success') {
        return this.finish(row, kind === 'accept' ? 'accepted' : 'rejected', kind === 'accept' ? { accepted_block: Number(receipt.blockNumber) } : {});
      }
      // Reverted: the chain moved (expired, superseded, revoked...). Re-evaluate from the chain's view.
      this.set(row, { state: back, attempts: row.attempts + 1 });
      if (row.attempts >= this.cfg.maxAttempts) this.finish(row, 'failed');
      return;
    }
    // No receipt: settled by someone's earlier transaction? Else re-broadcast the same bytes, unless our nonce
    // was used by another transaction (then sign again).
    const ch = await this.chain.channel(getAddress(row.device));
    const epoch = unpad(row.epoch);
    if (ch.epoch === epoch && ch.state === 2 && kind === 'accept') return this.finish(row, 'accepted', { accepted_block: Number(ch.acceptedAt) });
    if (ch.epoch === epoch && ch.state === 3) return this.finish(row, 'rejected');
    if (ch.epoch !== epoch || ch.state !== 1) {
      this.set(row, { state: back });
      return;
    }
    if ((await this.chain.confirmedNonce()) > (row.action_nonce ?? -1)) {
      this.set(row, { state: back });
      return;
    }
    if (kind === 'accept' && ch.offeredAt + this.ttl! < head) return this.finish(row, 'expired');
    await this.chain.broadcast(row.action_raw as Hex);
  }
}
