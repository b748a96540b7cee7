/**
 * The services a device (or a host running device code) injects into lib/.
 * lib/ never reaches for a global: each platform adapter (Moddable, the XS
 * simulator, Node) supplies these.
 */

/** Hardware-backed random bytes (ESP32: esp_fill_random with RF on; PROTOCOL.md §2). */
export interface Random {
  bytes(length: number): Uint8Array;
}

/** Wall clock; advisory only (PROTOCOL.md §7: `t` is unauthenticated). */
export interface Clock {
  /** Unix time in milliseconds. */
  now(): number;
  /**
   * Optional monotonic clock: milliseconds since an arbitrary origin (boot), never decreasing within a
   * boot, and moved only by time passing (not by SNTP or an RTC write). ESP32/Moddable: `Time.ticks`;
   * Node: `performance.now()`. The device's signing budget runs on it (docs/DECISIONS.md); without it
   * the engine falls back to the wall clock's forward steps, each capped (weaker: see DECISIONS.md).
   */
  monotonic?(): number;
}

/**
 * Small synchronous key/value store (NVS through Moddable's `preference` on the device).
 * Keys are at most 15 ASCII characters and values at most 4000 bytes (ESP-IDF NVS limits).
 */
export interface Storage {
  get(key: string): Uint8Array | undefined;
  set(key: string, value: Uint8Array): void;
  delete(key: string): void;
}

export interface HttpResponse {
  status: number;
  body: Uint8Array;
}

/** HTTP POST/GET to the relay. Implementations cap the response body (see MAX_RESPONSE_BYTES). */
export interface Transport {
  request(method: 'GET' | 'POST', url: string, body?: Uint8Array, contentType?: string): Promise<HttpResponse>;
}

/** PROTOCOL.md §5.3: a device drops, unparsed, any relay response over 8 KiB. */
export const MAX_RESPONSE_BYTES = 8 * 1024;
