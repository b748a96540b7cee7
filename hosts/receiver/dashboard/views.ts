// Read-only JSON the dashboard needs beyond PROTOCOL.md §9's two views: an overview of the fleet (the §9 device
// fields plus key age, last reading and replays refused) and one device's exchange history. Both are this
// receiver's own extensions (not iotkx/1 on the wire); §9's answers stay exactly as they are.
import { watcherStatus, type WatcherStatus } from '../exchange.js';
import { devicesView, type DeviceRow } from '../http.js';
import { gapCount, seqStateFromJson } from '../seqwindow.js';
import { pad, unpad, type Store } from '../store.js';

export interface LastReading {
  epoch: string;
  seq: string;
  values: unknown;
  receivedAt: string;
}

/** §9's device row plus what the dashboard shows beside it. */
export interface DeviceSummary extends DeviceRow {
  /** Seconds since the active epoch's key was accepted (our accept sent, else the offer seen); null without one. */
  keyAgeSec: number | null;
  /** Replayed or too-old envelopes refused, over all epochs (the per-epoch `replays` column ingest keeps). */
  replaysRefused: number;
  /** Authentic envelopes refused for another reason (after revocation, past the old-epoch grace, bad values). */
  refused: number;
  lastReading: LastReading | null;
}

export interface Overview {
  now: string;
  /** Last block whose logs the watcher processed, or null before the first pass. */
  lastBlock: number | null;
  /** Authentic envelopes waiting for an acceptance to confirm (ingest.ts `parked`). */
  parked: number;
  /** What the chain watcher waits for and why (exchange.ts WatcherStatus), null before its first pass. */
  watcher: WatcherStatus | null;
  devices: DeviceSummary[];
}

export function overviewView(store: Store, now = Date.now()): Overview {
  const db = store.db;
  const base = devicesView(store) as Omit<DeviceSummary, 'keyAgeSec' | 'replaysRefused' | 'refused' | 'lastReading'>[];
  const refused = db.prepare('SELECT COALESCE(SUM(n), 0) AS n FROM refused WHERE device = ?');
  const keyTimes = db.prepare('SELECT COALESCE(action_ms, created_ms) AS ms FROM epochs WHERE device = ? AND epoch = ?');
  const replays = db.prepare('SELECT COALESCE(SUM(replays), 0) AS n FROM epochs WHERE device = ?');
  const last = db.prepare('SELECT epoch, seq, values_json, received_ms FROM readings WHERE device = ? ORDER BY epoch DESC, seq DESC LIMIT 1');
  const devices = base.map((d) => {
    const key = d.epoch === null ? undefined : (keyTimes.get(d.device, pad(BigInt(d.epoch))) as { ms: number } | undefined);
    const r = last.get(d.device) as { epoch: string; seq: string; values_json: string; received_ms: number } | undefined;
    return {
      ...d,
      keyAgeSec: key ? Math.max(0, Math.floor((now - key.ms) / 1000)) : null,
      replaysRefused: (replays.get(d.device) as { n: number }).n,
      refused: (refused.get(d.device) as { n: number }).n,
      lastReading: r
        ? { epoch: unpad(r.epoch).toString(), seq: unpad(r.seq).toString(), values: JSON.parse(r.values_json), receivedAt: new Date(r.received_ms).toISOString() }
        : null,
    };
  });
  return {
    now: new Date(now).toISOString(),
    lastBlock: lastBlock(store),
    parked: parkedCount(store),
    watcher: watcherStatus(store),
    devices,
  };
}

/** The watcher's persisted cursor (exchange.ts meta `cursor`: {"block": "<n>", "hash"}). */
function lastBlock(store: Store): number | null {
  try {
    const c = JSON.parse(store.getMeta('cursor') ?? 'null') as { block?: unknown } | null;
    return typeof c?.block === 'string' && /^[0-9]+$/.test(c.block) ? Number(c.block) : null;
  } catch {
    return null;
  }
}

export function parkedCount(store: Store): number {
  return (store.db.prepare('SELECT COUNT(*) AS n FROM parked').get() as { n: number }).n;
}

export interface EpochHistory {
  epoch: string;
  /** Our state machine's name (exchange.ts), finer than §9's four. */
  state: string;
  keyVersion: number;
  offerTx: string;
  offerBlock: number | null;
  /** Our acceptKey / rejectKey transaction, if one was sent. */
  actionTx: string | null;
  acceptBlock: number | null;
  rejectReason: number | null;
  readings: number;
  replaysRefused: number;
  gaps: number;
  offeredAt: string;
  updatedAt: string;
}

export interface DeviceHistory {
  device: string;
  /** enrolled | revoked | unknown (the devices table: DeviceEnrolled / DeviceRevoked). */
  status: string;
  /** Block of the last DeviceRevoked: epochs accepted up to it are refused for readings (§5.6). */
  revokedBlock: number | null;
  /** Authentic envelopes refused, by reason (ingest.ts refuseAuthentic). */
  refused: Record<string, number>;
  epochs: EpochHistory[];
}

/** Every epoch the device offered to us, newest first; null for a device this receiver does not know. */
export function historyView(store: Store, device: string): DeviceHistory | null {
  const db = store.db;
  const dev = db.prepare('SELECT status, revoked_block FROM devices WHERE device = ?').get(device) as { status: string; revoked_block: number | null } | undefined;
  if (!dev) return null;
  const rows = db.prepare(`SELECT e.epoch, e.state, e.key_version, e.tx_hash, e.action_tx, e.accepted_block, e.reason, e.readings,
      e.replays, e.seq_state, e.created_ms, e.updated_ms,
      (SELECT MIN(o.block_number) FROM offer_logs o WHERE o.device = e.device AND o.epoch = e.epoch AND o.tx_hash = e.tx_hash) AS offer_block
    FROM epochs e WHERE e.device = ? ORDER BY e.epoch DESC`).all(device) as {
    epoch: string; state: string; key_version: number; tx_hash: string; action_tx: string | null; accepted_block: number | null;
    reason: number | null; readings: number; replays: number; seq_state: string | null; created_ms: number; updated_ms: number;
    offer_block: number | null;
  }[];
  return {
    device,
    status: dev.status,
    revokedBlock: dev.revoked_block,
    refused: Object.fromEntries((db.prepare('SELECT reason, n FROM refused WHERE device = ? ORDER BY reason').all(device) as { reason: string; n: number }[])
      .map((r) => [r.reason, r.n])),
    epochs: rows.map((r) => ({
      epoch: unpad(r.epoch).toString(),
      state: r.state,
      keyVersion: r.key_version,
      offerTx: r.tx_hash,
      offerBlock: r.offer_block,
      actionTx: r.action_tx,
      acceptBlock: r.state === 'accepted' ? r.accepted_block : null,
      rejectReason: r.reason,
      readings: r.readings,
      replaysRefused: r.replays,
      gaps: Number(gapCount(seqStateFromJson(r.seq_state))),
      offeredAt: new Date(r.created_ms).toISOString(),
      updatedAt: new Date(r.updated_ms).toISOString(),
    })),
  };
}
