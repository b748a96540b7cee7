/**
 * Prometheus metrics (prom-client), in a registry of the relay's own so several relays
 * can live in one process (tests). Label values are bounded: unknown routes and methods
 * are folded into "other", so hostile input cannot grow the series count.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ALLOWED_METHODS } from './rpc-policy.js';

export class RelayMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'iotkx_relay_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'iotkx_relay_http_request_duration_seconds',
    help: 'HTTP request latency by route',
    labelNames: ['route'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });
  readonly rpcCalls = new Counter({
    name: 'iotkx_relay_rpc_calls_total',
    help: 'JSON-RPC calls by method and outcome (ok, rpc-error, refused, invalid, upstream-failed)',
    labelNames: ['method', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly upstreamErrors = new Counter({
    name: 'iotkx_relay_upstream_errors_total',
    help: 'Failed upstream requests by kind (timeout, unreachable, http-status, bad-response, too-large)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly readings = new Counter({
    name: 'iotkx_relay_readings_total',
    help: 'POST /v1/readings results (stored, duplicate, refused)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly commits = new Histogram({
    name: 'iotkx_relay_commit_envelopes',
    help: 'Envelopes per group commit of POST /v1/readings (one fsync each), by outcome (ok, failed)',
    labelNames: ['outcome'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
    registers: [this.registry],
  });

  readonly commitWaiting = new Gauge({
    name: 'iotkx_relay_commit_waiting',
    help: 'Envelopes of POSTs waiting for their group commit (not yet durable, not yet answered)',
    registers: [this.registry],
  });

  readonly stored = new Gauge({
    name: 'iotkx_relay_envelopes_stored',
    help: 'Envelopes held in the store (the queue receivers pull from; rows are never deleted)',
    registers: [this.registry],
  });

  constructor(defaultMetrics = false) {
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  // Hot path: prom-client hashes a label object on every inc/observe; the labelled children are
  // cached instead (keys are bounded: routes × statuses, methods × outcomes).
  private readonly children = new Map<string, { inc(): void } | { observe(v: number): void }>();

  rpcCall(method: string | undefined, outcome: string): void {
    const m = method !== undefined && ALLOWED_METHODS.has(method) ? method : 'other';
    this.child(`c\0${m}\0${outcome}`, () => this.rpcCalls.labels(m, outcome)).inc();
  }

  /** One finished HTTP request: its count by route and status, and its latency by route. */
  request(route: string, status: number, seconds: number): void {
    this.child(`r\0${route}\0${status}`, () => this.requests.labels(route, String(status))).inc();
    this.child(`l\0${route}`, () => this.latency.labels(route)).observe(seconds);
  }

  private child<T extends object>(key: string, make: () => T): T {
    let c = this.children.get(key) as T | undefined;
    if (!c) {
      c = make();
      this.children.set(key, c as never);
    }
    return c;
  }
}
