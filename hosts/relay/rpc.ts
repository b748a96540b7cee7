/**
 * JSON-RPC 2.0 proxy (PROTOCOL.md §8, §9): parse, validate each call against the policy,
 * forward only what passes (ids rewritten, unknown members stripped), and answer in the
 * caller's order with the caller's ids. Nothing here ever throws to the HTTP layer.
 */
import {
  ALLOWED_METHODS, RPC_INTERNAL_ERROR, RPC_INVALID_PARAMS, RPC_INVALID_REQUEST, RPC_METHOD_NOT_FOUND,
  RPC_PARSE_ERROR, RPC_UPSTREAM_ERROR, checkParams, type Deployment,
} from './rpc-policy.js';
import { UpstreamError, type Coalescer } from './upstream.js';

export type RpcId = string | number | null;

/** Methods whose calls never share an upstream exchange with another client's. */
const ALONE: ReadonlySet<string> = new Set(['eth_getLogs', 'eth_sendRawTransaction']);

export interface RpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

export interface RpcResponse {
  jsonrpc: '2.0';
  id: RpcId;
  result?: unknown;
  error?: RpcErrorObject;
}

/** Per-call outcome, for metrics. */
export type CallOutcome = 'ok' | 'rpc-error' | 'refused' | 'invalid' | 'upstream-failed';

export const rpcError = (id: RpcId, code: number, message: string, data?: unknown): RpcResponse =>
  data === undefined ? { jsonrpc: '2.0', id, error: { code, message } } : { jsonrpc: '2.0', id, error: { code, message, data } };

/** A body, parsed: either a terminal answer (parse error, bad batch) or the entries to run. */
export type ParsedBody =
  | { kind: 'answer'; answer: RpcResponse }
  | { kind: 'calls'; batch: boolean; entries: unknown[] };

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function parseRpcBody(body: Uint8Array, maxBatch: number): ParsedBody {
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(body));
  } catch {
    return { kind: 'answer', answer: rpcError(null, RPC_PARSE_ERROR, 'parse error: the body is not JSON (UTF-8)') };
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return { kind: 'answer', answer: rpcError(null, RPC_INVALID_REQUEST, 'empty batch') };
    if (value.length > maxBatch) {
      return { kind: 'answer', answer: rpcError(null, RPC_INVALID_REQUEST, `batch of ${value.length} calls, over the limit of ${maxBatch}`) };
    }
    return { kind: 'calls', batch: true, entries: value };
  }
  return { kind: 'calls', batch: false, entries: [value] };
}

type Prepared =
  | { id: RpcId; method: string; params: unknown[]; refusal?: undefined }
  | { id: RpcId; method: string | undefined; refusal: RpcResponse; outcome: CallOutcome };

const isId = (v: unknown): v is RpcId =>
  v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));

function prepare(entry: unknown, d: Deployment): Prepared {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    return { id: null, method: undefined, refusal: rpcError(null, RPC_INVALID_REQUEST, 'a call must be a JSON object'), outcome: 'invalid' };
  }
  const e = entry as Record<string, unknown>;
  const invalid = (id: RpcId, msg: string): Prepared => ({ id, method: undefined, refusal: rpcError(id, RPC_INVALID_REQUEST, msg), outcome: 'invalid' });
  // Notifications (no id) get no answer under JSON-RPC 2.0; a device always needs one, so the relay refuses them.
  if (!Object.hasOwn(e, 'id')) return invalid(null, 'a call needs an id (notifications are not relayed)');
  if (!isId(e.id)) return invalid(null, 'id must be a string, a number or null');
  const id = e.id;
  if (e.jsonrpc !== '2.0') return invalid(id, 'jsonrpc must be "2.0"');
  if (typeof e.method !== 'string') return invalid(id, 'method must be a string');
  const method = e.method;
  if (!ALLOWED_METHODS.has(method)) {
    return { id, method, refusal: rpcError(id, RPC_METHOD_NOT_FOUND, `method not offered by this relay: ${method.slice(0, 64)}`), outcome: 'refused' };
  }
  let params: unknown[];
  if (!Object.hasOwn(e, 'params')) params = [];
  else if (Array.isArray(e.params)) params = e.params;
  else if (typeof e.params === 'object' && e.params !== null) {
    return { id, method, refusal: rpcError(id, RPC_INVALID_PARAMS, 'params must be positional (an array)'), outcome: 'refused' };
  } else return invalid(id, 'params must be an array');
  const refusal = checkParams(method, params, d);
  if (refusal) return { id, method, refusal: rpcError(id, refusal.code, refusal.message), outcome: 'refused' };
  return { id, method, params };
}

/** Keep only the members JSON-RPC defines from an upstream answer. */
function relayAnswer(id: RpcId, up: unknown): { answer: RpcResponse; outcome: CallOutcome } {
  if (typeof up === 'object' && up !== null) {
    const u = up as Record<string, unknown>;
    const err = u.error as Record<string, unknown> | undefined;
    if (typeof err === 'object' && err !== null) {
      const code = Number.isInteger(err.code) ? (err.code as number) : RPC_INTERNAL_ERROR;
      const message = typeof err.message === 'string' ? err.message : 'upstream error';
      return { answer: rpcError(id, code, message, err.data), outcome: 'rpc-error' };
    }
    if (Object.hasOwn(u, 'result')) return { answer: { jsonrpc: '2.0', id, result: u.result }, outcome: 'ok' };
  }
  return { answer: rpcError(id, RPC_UPSTREAM_ERROR, 'upstream gave no answer for this call'), outcome: 'upstream-failed' };
}

export interface RpcHooks {
  onCall(method: string | undefined, outcome: CallOutcome): void;
  onUpstreamFailure(kind: string): void;
}

export class RpcProxy {
  constructor(private readonly deployment: Deployment, private readonly upstream: Pick<Coalescer, 'call'>, private readonly hooks: RpcHooks) {}

  /** Answer the parsed calls: an array for a batch, one object otherwise. */
  async run(batch: boolean, entries: unknown[]): Promise<RpcResponse | RpcResponse[]> {
    const prepared = entries.map((e) => prepare(e, this.deployment));
    const answers: RpcResponse[] = new Array(prepared.length);
    const forward: number[] = [];
    prepared.forEach((p, i) => {
      if (p.refusal) {
        answers[i] = p.refusal;
        this.hooks.onCall(p.method, p.outcome);
      } else forward.push(i);
    });
    if (forward.length) {
      // Upstream ids are our own (the call's index): the caller's ids may repeat or be null.
      const calls = forward.map((i) => {
        const p = prepared[i] as { method: string; params: unknown[] };
        return { jsonrpc: '2.0', id: i, method: p.method, params: p.params };
      });
      const byIndex = new Map<number, unknown>();
      let failure: RpcErrorObject | undefined;
      try {
        // eth_getLogs answers can be large, and a raw transaction must never be sent twice (a shared exchange
        // may be retried caller by caller, upstream.ts): both travel in an upstream exchange of their own.
        const up = await this.upstream.call(calls, calls.some((c) => ALONE.has(c.method)));
        for (const a of up) {
          const idx = (a as { id?: unknown } | null)?.id;
          if (typeof idx === 'number' && !byIndex.has(idx)) byIndex.set(idx, a);
        }
      } catch (e) {
        const kind = e instanceof UpstreamError ? e.kind : 'internal';
        this.hooks.onUpstreamFailure(kind);
        failure = { code: RPC_UPSTREAM_ERROR, message: e instanceof UpstreamError ? e.message : 'upstream call failed', data: { reason: kind } };
      }
      for (const i of forward) {
        const p = prepared[i];
        if (failure) {
          answers[i] = rpcError(p.id, failure.code, failure.message, failure.data);
          this.hooks.onCall(p.method, 'upstream-failed');
        } else {
          const { answer, outcome } = relayAnswer(p.id, byIndex.get(i));
          answers[i] = answer;
          this.hooks.onCall(p.method, outcome);
        }
      }
    }
    return batch ? answers : answers[0];
  }
}
