/**
 * Push: every decrypted, accepted reading goes to an MQTT broker (the provider's own systems subscribe there).
 *
 * The receiver's readings table is the outbox. The publisher reads it in insertion order (SQLite `rowid`:
 * readings are never deleted, so it only grows) after a persisted cursor, publishes each reading with QoS 1
 * and moves the cursor only past readings the broker acknowledged (PUBACK). So delivery is at least once
 * across broker restarts, lost connections and receiver restarts: what was not acknowledged is sent again,
 * and a reading is sent twice only when the receiver stopped between a PUBACK and the cursor write — the
 * duplicates MQTT QoS 1 allows anyway. Subscribers that need exactly once key on (device, epoch, seq).
 *
 * Topic `<prefix>/<device>/readings` (device as lowercase 0x hex: topics are case-sensitive, and this is the
 * spelling the receiver stores); payload JSON `{device, epoch, seq, values, receivedAt}` with §9's
 * conventions (uint64 as decimal strings, RFC 3339 times).
 */
import { createHash } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { Counter, Gauge } from 'prom-client';
import type { ReceiverMetrics } from './metrics.js';
import type { Logger } from './receiver.js';
import { unpad, type Store } from './store.js';

export interface MqttOptions {
  /** Broker URL, e.g. mqtt://127.0.0.1:1883 or mqtts://user:pass@broker:8883. */
  url: string;
  /** Topic prefix (default "iotkx"). */
  topicPrefix?: string;
  /** Client id (default derived from the receiver's address, so a restarted receiver resumes its session). */
  clientId?: string;
  /** Readings published per pass (default 200). */
  batch?: number;
  /** Milliseconds between passes when idle (default 500). */
  pollMs?: number;
}

export interface MqttPublisher {
  /** Publishes what is pending now; resolves when the broker acknowledged it (or the connection failed). */
  flush(): Promise<void>;
  /** Rowid of the last acknowledged reading. */
  cursor(): number;
  stop(): Promise<void>;
}

interface Row { rowid: number; device: string; epoch: string; seq: string; values_json: string; received_ms: number }

/** The URL without credentials, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.username || u.password) { u.username = '***'; u.password = ''; }
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

export function startMqttPublisher(store: Store, receiver: string, metrics: ReceiverMetrics, opts: MqttOptions, log: Logger): MqttPublisher {
  const prefix = (opts.topicPrefix ?? 'iotkx').replace(/\/+$/, '');
  if (!prefix || /[#+]/.test(prefix)) throw new Error(`MQTT topic prefix ${JSON.stringify(opts.topicPrefix)} must be non-empty, without + or #`);
  // One cursor per broker (and prefix): pointing the receiver at a new broker publishes the history there.
  const cursorKey = `mqtt.cursor:${createHash('sha256').update(`${redactUrl(opts.url)}|${prefix}`).digest('hex').slice(0, 16)}`;
  const batch = opts.batch ?? 200;
  const published = new Counter({ name: 'iotkx_receiver_mqtt_published_total', help: 'Readings the MQTT broker acknowledged', registers: [metrics.registry] });
  const backlog = new Gauge({ name: 'iotkx_receiver_mqtt_backlog', help: 'Readings not yet acknowledged by the MQTT broker', registers: [metrics.registry] });
  const connected = new Gauge({ name: 'iotkx_receiver_mqtt_connected', help: '1 while connected to the MQTT broker', registers: [metrics.registry] });
  const select = store.db.prepare(`SELECT rowid, device, epoch, seq, values_json, received_ms FROM readings WHERE rowid > ? ORDER BY rowid LIMIT ?`);
  const countAfter = store.db.prepare('SELECT count(*) AS n FROM readings WHERE rowid > ?');
  let cursor = Number(store.getMeta(cursorKey) ?? '0');

  const client: MqttClient = mqtt.connect(opts.url, {
    clientId: opts.clientId ?? `iotkx-receiver-${receiver.toLowerCase().slice(2, 14)}`,
    clean: true, // the outbox, not the broker session, carries what is unacknowledged
    reconnectPeriod: 1000,
    connectTimeout: 5000,
  });
  let wasConnected = false;
  client.on('connect', () => {
    connected.set(1);
    if (!wasConnected) log('mqtt connected', { broker: redactUrl(opts.url) });
    wasConnected = true;
    void flush();
  });
  client.on('offline', () => {
    connected.set(0);
    if (wasConnected) log('mqtt broker unreachable; readings wait in the receiver until it is back', { broker: redactUrl(opts.url) });
    wasConnected = false;
  });
  client.on('error', (e) => log('mqtt error', { error: e.message }));

  let running: Promise<void> | undefined;
  const pass = async () => {
    while (client.connected) {
      const rows = select.all(cursor, batch) as Row[];
      if (rows.length === 0) break;
      // Publish the page concurrently (QoS 1 keeps each message until its PUBACK); advance the cursor over the
      // acknowledged prefix only, so one failure means a resend from there, never a skipped reading.
      const results = await Promise.allSettled(rows.map((r) => client.publishAsync(
        `${prefix}/${r.device}/readings`,
        JSON.stringify({
          device: r.device, epoch: unpad(r.epoch).toString(), seq: unpad(r.seq).toString(),
          values: JSON.parse(r.values_json), receivedAt: new Date(r.received_ms).toISOString(),
        }),
        { qos: 1 },
      )));
      let acked = 0;
      while (acked < rows.length && results[acked].status === 'fulfilled') acked++;
      if (acked > 0) {
        cursor = rows[acked - 1].rowid;
        store.setMeta(cursorKey, String(cursor));
        published.inc(acked);
      }
      if (acked < rows.length) {
        log('mqtt publish failed; will resend', { error: String((results[acked] as PromiseRejectedResult).reason) });
        break;
      }
    }
    backlog.set((countAfter.get(cursor) as { n: number }).n);
  };
  const flush = (): Promise<void> => {
    running = (running ?? Promise.resolve()).then(pass).catch((e) => log('mqtt pass failed', { error: (e as Error).message }));
    return running;
  };
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => void flush().finally(schedule), opts.pollMs ?? 500);
  };
  schedule();

  return {
    flush,
    cursor: () => cursor,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      // End first: a publish waiting for an unreachable broker fails instead of holding stop() up; what it
      // carried stays after the cursor and goes out at the next start.
      await client.endAsync(true).catch(() => undefined);
      await running;
    },
  };
}
