/**
 * secp256k1 for iotkx, built from @noble/curves' generic Weierstrass code so that
 * (1) the platform's hardware RNG is injected (noble otherwise looks for
 * `crypto.getRandomValues`, which the device lacks, and silently drops scalar
 * blinding), and (2) the size of the base-point table is ours to choose: noble's
 * default table retains ~522 KB on XS, more than an ESP32's whole XS heap.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { Field } from '@noble/curves/abstract/modular.js';
import { ecdsa, weierstrass } from '@noble/curves/abstract/weierstrass.js';
import { IotkxError, check } from './errors.js';
import type { Random } from './platform.js';

/** Curve parameters: SEC 2 v2 §2.4.1 (https://www.secg.org/sec2-v2.pdf). */
const CURVE = {
  p: BigInt('0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f'),
  n: BigInt('0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141'),
  h: 1n,
  a: 0n,
  b: 7n,
  Gx: BigInt('0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798'),
  Gy: BigInt('0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8'),
};
/** GLV endomorphism constants, as in noble's secp256k1.ts (Gallant–Lambert–Vanstone 2001). */
const ENDO = {
  beta: BigInt('0x7ae96a2b657c07106e64479eac3434e99cf0497512f58995c1396c28719501ee'),
  basises: [
    [BigInt('0x3086d221a7d46bcde86c90e49284eb15'), -BigInt('0xe4437ed6010e88286f547fa90abfe4c3')],
    [BigInt('0x114ca50f7a8e2f3f657c1108d9d44cfd8'), BigInt('0x3086d221a7d46bcde86c90e49284eb15')],
  ] as [[bigint, bigint], [bigint, bigint]],
};

/** The group order n, and n/2: Ethereum (EIP-2) and PROTOCOL.md §2 refuse s > n/2. */
export const CURVE_ORDER = CURVE.n;
export const HALF_ORDER = CURVE.n >> 1n;

/**
 * Window of the precomputed base-point table (wNAF). Table = (ceil(256/W)+1)·2^(W−1)
 * points. W=1 (no table) keeps the retained heap under 64 KiB; W=2 already retains
 * ~145 KiB and W=4 ~242 KiB on xsnap (bench/RESULTS.md), against ~160 KiB of XS heap in all
 * on an ESP32 without PSRAM. Signing then costs ~4.6 M compute instead of ~2.6 M.
 */
export const BASE_WINDOW = 1;

function build(random: Random) {
  const randomBytes = (n = 32) => random.bytes(n) as Uint8Array<ArrayBuffer>;
  const Fp = Field(CURVE.p);
  const Point = weierstrass(CURVE, { Fp, endo: ENDO, randomBytes });
  Point.BASE.precompute(BASE_WINDOW);
  return ecdsa(Point, sha256, { randomBytes });
}

type Curve = ReturnType<typeof build>;
let instance: Curve | undefined;
let installed: Random | undefined;

/**
 * Give lib/ the platform RNG. Must run before any curve operation; the first
 * call wins (a second, different RNG is refused rather than silently swapped).
 */
export function installRandom(random: Random): void {
  if (installed === random) return;
  check(installed === undefined, 'random-installed', 'secp256k1: a random source is already installed');
  installed = random;
}

/** The curve, built on first use with the installed RNG. */
export function curve(): Curve {
  if (!instance) {
    if (!installed) throw new IotkxError('no-random', 'secp256k1: no random source installed (call installRandom first)');
    instance = build(installed);
  }
  return instance;
}

export function isValidSecretKey(sk: Uint8Array): boolean {
  return sk instanceof Uint8Array && sk.length === 32 && curve().utils.isValidSecretKey(sk);
}

/** A fresh secret key from the installed (hardware) RNG. */
export function randomSecretKey(): Uint8Array {
  return curve().utils.randomSecretKey();
}

/** 65-byte uncompressed public key `0x04 || X || Y`. */
export function getPublicKey(sk: Uint8Array): Uint8Array {
  check(isValidSecretKey(sk), 'bad-key', 'secp256k1: invalid secret key');
  return curve().getPublicKey(sk, false);
}

/**
 * Refuse anything but a 65-byte uncompressed point on the curve (not infinity).
 * Receiver keys and ECIES ephemeral keys pass through here (PROTOCOL.md §2, §5.3).
 */
export function assertPublicKey(pub: Uint8Array, what = 'public key'): void {
  check(pub instanceof Uint8Array && pub.length === 65 && pub[0] === 0x04, 'bad-point', `${what}: not a 65-byte uncompressed point`);
  try {
    curve().Point.fromBytes(pub).assertValidity();
  } catch {
    throw new IotkxError('bad-point', `${what}: not a point on secp256k1`);
  }
}

/** ECDH: the shared point `S = sk · pub`, 65 bytes uncompressed (as ECIES needs it). */
export function sharedPoint(sk: Uint8Array, pub: Uint8Array): Uint8Array {
  assertPublicKey(pub);
  check(isValidSecretKey(sk), 'bad-key', 'secp256k1: invalid secret key');
  return curve().getSharedSecret(sk, pub, false);
}
