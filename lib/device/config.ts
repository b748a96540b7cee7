/**
 * The device's provisioned configuration (PROTOCOL.md §5.2, §6 `provision`).
 * Parsed strictly from the console's JSON: uint values as decimal strings or safe
 * integers, addresses as hex (EIP-55 or one case). Stored as the same normalized
 * JSON, so storage and the console share one parser.
 */
import { addressHex, parseAddress } from '../address.js';
import { utf8Decode, utf8Encode } from '../bytes.js';
import { IotkxError, check } from '../errors.js';

export interface DeviceConfig {
  relayUrl: string;
  /** EIP-155 chain id the device signs with (never eth_chainId's answer, §5.3). */
  chainId: bigint;
  contract: Uint8Array;
  /** The pinned receiver's account address (§1). */
  receiver: Uint8Array;
  intervalSec: number;
  network?: { ssid: string; password: string };
  /** Spending caps (§5.2): a lying relay makes the device pay at most these. */
  maxFeePerGas: bigint;
  maxPriorityFeePerGas: bigint;
  /** Gas limit of an offer (§5.3; eth_estimateGas is advisory only). */
  offerGas: bigint;
  maxTxPerDay: number;
  /** Seconds per block, used for T = offerTtlBlocks × blockTime (§5.3); may be fractional. */
  blockTime: number;
  /** Ceiling of the offer back-off (§5.3), seconds. */
  backoffMaxSec: number;
  /** Rotation policy (§5.6): 0 disables a criterion. */
  rotation: { maxReadings: number; maxAgeSec: number };
}

/** NVS value limit (MODDABLE.md §3); the stored config must fit one value. */
export const MAX_CONFIG_BYTES = 4000;
/** Bounds that catch typos without restricting real deployments. */
const MAX_URL = 256;
const MAX_TX_PER_DAY = 10_000;
const MIN_OFFER_GAS = 21_000n; // intrinsic gas of any transaction (Yellow Paper G_transaction)
const MAX_OFFER_GAS = 30_000_000n;
const MAX_CHAIN_ID = (1n << 64n) - 1n; // chain ids fit a uint64 in practice (EIP-2294 bounds them lower)
const MAX_UINT256 = (1n << 256n) - 1n;

const KEYS = ['relayUrl', 'chainId', 'contract', 'receiver', 'intervalSec', 'network', 'maxFeePerGas', 'maxPriorityFeePerGas',
  'offerGas', 'maxTxPerDay', 'blockTime', 'backoffMaxSec', 'rotation'];

function fail(field: string, why: string): never {
  throw new IotkxError('bad-config', `config.${field}: ${why}`);
}

function uint(v: unknown, field: string, min: bigint, max: bigint): bigint {
  let x: bigint;
  if (typeof v === 'number' && Number.isSafeInteger(v)) x = BigInt(v);
  else if (typeof v === 'string' && /^(0|[1-9][0-9]*)$/.test(v) && v.length <= 78) x = BigInt(v);
  else fail(field, 'expected an unsigned integer (decimal string or safe integer)');
  if (x < min || x > max) fail(field, `must be in [${min}, ${max}]`);
  return x;
}

function small(v: unknown, field: string, min: number, max: number): number {
  return Number(uint(v, field, BigInt(min), BigInt(max)));
}

function address(v: unknown, field: string): Uint8Array {
  if (typeof v !== 'string') fail(field, 'expected a 0x-prefixed address');
  let a: Uint8Array;
  try {
    a = parseAddress(v);
  } catch (e) {
    fail(field, (e as Error).message);
  }
  if (a.every((b) => b === 0)) fail(field, 'the zero address');
  return a;
}

function text(v: unknown, field: string, max: number): string {
  if (typeof v !== 'string' || v.length > max) fail(field, `expected a string of at most ${max} characters`);
  return v;
}

/** Validate the `config` object of a `provision` request (or a stored config). */
export function parseConfig(json: unknown): DeviceConfig {
  check(json !== null && typeof json === 'object' && !Array.isArray(json), 'bad-config', 'config: expected an object');
  const o = json as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KEYS.includes(k)) fail(k, 'unknown field');
  const relayUrl = text(o.relayUrl, 'relayUrl', MAX_URL);
  if (!/^https?:\/\/[^\s/]+(\/\S*)?$/.test(relayUrl)) fail('relayUrl', 'expected an http:// or https:// URL');
  // blockTime may be fractional (sub-second L2 blocks): a positive finite number, or a decimal string.
  const bt = typeof o.blockTime === 'string' && /^[0-9]+(\.[0-9]+)?$/.test(o.blockTime) ? Number(o.blockTime) : o.blockTime;
  if (typeof bt !== 'number' || !Number.isFinite(bt) || bt <= 0 || bt > 3600) fail('blockTime', 'expected seconds in (0, 3600]');
  let network: DeviceConfig['network'];
  if (o.network !== undefined) {
    const n = o.network as Record<string, unknown>;
    if (n === null || typeof n !== 'object') fail('network', 'expected {ssid, password}');
    for (const k of Object.keys(n)) if (k !== 'ssid' && k !== 'password') fail(`network.${k}`, 'unknown field');
    // 802.11: SSID ≤ 32 octets, WPA2 passphrase ≤ 63 characters.
    network = { ssid: text(n.ssid, 'network.ssid', 32), password: text(n.password ?? '', 'network.password', 63) };
  }
  const r = o.rotation as Record<string, unknown> | undefined;
  if (r === null || typeof r !== 'object') fail('rotation', 'expected {maxReadings, maxAgeSec}');
  for (const k of Object.keys(r)) if (k !== 'maxReadings' && k !== 'maxAgeSec') fail(`rotation.${k}`, 'unknown field');
  const cfg: DeviceConfig = {
    relayUrl,
    chainId: uint(o.chainId, 'chainId', 1n, MAX_CHAIN_ID),
    contract: address(o.contract, 'contract'),
    receiver: address(o.receiver, 'receiver'),
    intervalSec: small(o.intervalSec, 'intervalSec', 1, 86_400 * 7),
    network,
    maxFeePerGas: uint(o.maxFeePerGas, 'maxFeePerGas', 1n, MAX_UINT256),
    maxPriorityFeePerGas: uint(o.maxPriorityFeePerGas, 'maxPriorityFeePerGas', 0n, MAX_UINT256),
    offerGas: uint(o.offerGas, 'offerGas', MIN_OFFER_GAS, MAX_OFFER_GAS),
    maxTxPerDay: small(o.maxTxPerDay, 'maxTxPerDay', 1, MAX_TX_PER_DAY),
    blockTime: bt,
    backoffMaxSec: small(o.backoffMaxSec, 'backoffMaxSec', 1, 86_400 * 30),
    rotation: { maxReadings: small(r.maxReadings ?? 0, 'rotation.maxReadings', 0, Number.MAX_SAFE_INTEGER), maxAgeSec: small(r.maxAgeSec ?? 0, 'rotation.maxAgeSec', 0, 86_400 * 366) },
  };
  if (cfg.maxPriorityFeePerGas > cfg.maxFeePerGas) fail('maxPriorityFeePerGas', 'exceeds maxFeePerGas');
  // The fee of one offer must not overflow a uint256 (the chain would refuse it anyway).
  if (cfg.maxFeePerGas * cfg.offerGas > MAX_UINT256) fail('maxFeePerGas', 'maxFeePerGas × offerGas overflows');
  return cfg;
}

/** The normalized JSON form (uints as decimal strings, addresses lowercase hex). */
export function configToJson(c: DeviceConfig): Record<string, unknown> {
  return {
    relayUrl: c.relayUrl,
    chainId: c.chainId.toString(),
    contract: addressHex(c.contract),
    receiver: addressHex(c.receiver),
    intervalSec: c.intervalSec,
    ...(c.network ? { network: { ssid: c.network.ssid, password: c.network.password } } : {}),
    maxFeePerGas: c.maxFeePerGas.toString(),
    maxPriorityFeePerGas: c.maxPriorityFeePerGas.toString(),
    offerGas: c.offerGas.toString(),
    maxTxPerDay: c.maxTxPerDay,
    blockTime: c.blockTime,
    backoffMaxSec: c.backoffMaxSec,
    rotation: { maxReadings: c.rotation.maxReadings, maxAgeSec: c.rotation.maxAgeSec },
  };
}

/** Bytes for Storage (UTF-8 JSON of the normalized form). */
export function encodeConfig(c: DeviceConfig): Uint8Array {
  const bytes = utf8Encode(JSON.stringify(configToJson(c)));
  check(bytes.length <= MAX_CONFIG_BYTES, 'bad-config', `config: ${bytes.length} bytes exceeds the ${MAX_CONFIG_BYTES}-byte NVS value limit`);
  return bytes;
}

export function decodeConfig(bytes: Uint8Array): DeviceConfig {
  let json: unknown;
  try {
    json = JSON.parse(utf8Decode(bytes));
  } catch (e) {
    if (e instanceof IotkxError) throw e;
    throw new IotkxError('bad-config', 'config: stored value is not JSON');
  }
  return parseConfig(json);
}
