// Mirrors the Moddable SDK's typings/global.d.ts and xs/includes/xs.d.ts (MODDABLE.md §3, §4):
// trace() goes to xsbug (nothing in release builds); `device` is the ECMA-419 host provider
// (plain -p esp32 has only `io`, board targets add I2C.default with their pins; lin has none).
declare function trace(...args: unknown[]): void;
declare const device: {
  readonly I2C?: { readonly default?: Record<string, unknown> };
  readonly io?: Record<string, unknown>;
} | undefined;
