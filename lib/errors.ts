/**
 * Every failure that crosses a boundary of lib/ is an IotkxError with a stable
 * `code` (kebab-case), so callers branch on the code and people read the message.
 */
export class IotkxError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * Give an Error subclass its `name` on the prototype. Never `this.name = ...` in a constructor: on the device the
 * realm is frozen after preload, `Error.prototype.name` is read-only, and the assignment throws
 * "set name: not writable" (MODDABLE.md §3; the simulator freezes its realm the same way, hosts/xs/freeze.ts).
 */
export function nameErrorClass(cls: { prototype: Error }, name: string): void {
  Object.defineProperty(cls.prototype, 'name', { value: name, writable: false, enumerable: false, configurable: true });
}
nameErrorClass(IotkxError, 'IotkxError');

/** Throw an IotkxError unless `cond` holds. */
export function check(cond: unknown, code: string, message: string): asserts cond {
  if (!cond) throw new IotkxError(code, message);
}
