/**
 * Every failure that crosses a boundary of lib/ is an IotkxError with a stable
 * `code` (kebab-case), so callers branch on the code and people read the message.
 */
export class IotkxError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'IotkxError';
    this.code = code;
  }
}

/** Throw an IotkxError unless `cond` holds. */
export function check(cond: unknown, code: string, message: string): asserts cond {
  if (!cond) throw new IotkxError(code, message);
}
