// Prometheus metrics (PROTOCOL.md §9 GET /metrics). A registry per receiver, not prom-client's global one,
// so several receivers can run in one process (tests) without clashing names.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export type ExchangeOutcome =
  | 'accepted' | 'rejected_undecryptable' | 'rejected_commitment' | 'rejected_policy' | 'expired' | 'superseded' | 'failed';

export type RefusalReason =
  | 'malformed' | 'unknown-device' | 'revoked' | 'unknown-epoch' | 'auth-failed' | 'bad-reading' | 'non-finite'
  | 'replay' | 'too-old' | 'old-epoch';

export class ReceiverMetrics {
  readonly registry = new Registry();
  readonly exchanges = new Counter({
    name: 'iotkx_receiver_exchanges_total', help: 'Key offers handled, by final outcome',
    labelNames: ['outcome'] as const, registers: [this.registry],
  });
  readonly readingsAccepted = new Counter({
    name: 'iotkx_receiver_readings_accepted_total', help: 'Authentic readings stored', registers: [this.registry],
  });
  readonly readingsRefused = new Counter({
    name: 'iotkx_receiver_readings_refused_total', help: 'Envelopes refused, by reason',
    labelNames: ['reason'] as const, registers: [this.registry],
  });
  readonly gapsFilled = new Counter({
    name: 'iotkx_receiver_gaps_filled_total', help: 'Late authentic readings that filled a gap', registers: [this.registry],
  });
  readonly clockSkew = new Counter({
    name: 'iotkx_receiver_readings_clock_skew_total', help: 'Readings whose t differs from receipt time by more than the allowed skew (§7)',
    registers: [this.registry],
  });
  readonly reorgs = new Counter({
    name: 'iotkx_receiver_reorgs_total', help: 'Re-scans after the last processed block changed hash', registers: [this.registry],
  });
  readonly lastBlock = new Gauge({
    name: 'iotkx_receiver_last_processed_block', help: 'Last block whose logs were processed', registers: [this.registry],
  });
  readonly errors = new Counter({
    name: 'iotkx_receiver_errors_total', help: 'Errors in the watcher or ingestion loops, by stage',
    labelNames: ['stage'] as const, registers: [this.registry],
  });

  readonly parked = new Gauge({
    name: 'iotkx_receiver_parked_envelopes', help: 'Authentic envelopes held until their epoch\'s acceptance confirms (the ingestion queue)',
    registers: [this.registry],
  });
  readonly httpRequests = new Counter({
    name: 'iotkx_receiver_http_requests_total', help: 'HTTP requests by route and status',
    labelNames: ['route', 'status'] as const, registers: [this.registry],
  });
  readonly httpLatency = new Histogram({
    name: 'iotkx_receiver_http_request_duration_seconds', help: 'HTTP request latency by route',
    labelNames: ['route'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });

  constructor() {
    for (const o of ['accepted', 'rejected_undecryptable', 'rejected_commitment', 'rejected_policy', 'expired', 'superseded', 'failed']) {
      this.exchanges.inc({ outcome: o }, 0);
    }
  }
}

/** Route label of a request path: a fixed set, so hostile paths cannot grow the series count. */
export function routeLabel(path: string): string {
  if (path === '/v1/devices' || path === '/healthz' || path === '/metrics' || path === '/v1/dashboard') return path.slice(1).replace('v1/', '');
  if (/^\/v1\/devices\/[^/]+\/readings$/.test(path)) return 'readings';
  if (path === '/v1/readings') return 'export';
  if (/^\/v1\/devices\/[^/]+\/history$/.test(path)) return 'history';
  if (path === '/' || path.startsWith('/dashboard/')) return 'page';
  return 'other';
}
