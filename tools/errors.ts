/**
 * Exit codes of the `iotkx` CLI (documented in `iotkx --help` and README.md): a script can tell a device
 * problem from a chain problem from a refusal without parsing messages.
 */
export const EXIT = {
  ok: 0,
  /** Anything not covered below (a bug, a file that cannot be written). */
  failure: 1,
  /** Bad flags or missing configuration (no RPC URL, no contract…). */
  usage: 2,
  /** The device or its console: nothing listening, no reply, not iotkx firmware, an error reply. */
  device: 3,
  /** The chain: unreachable, wrong chain id, no contract, a revert, insufficient funds, not authorised. */
  chain: 4,
  /** Refused on purpose: already provisioned, declined confirmation, confirmation mismatch, unsafe while running. */
  refused: 5,
  /** The receiver or relay HTTP API: unreachable or an error answer. */
  service: 6,
  /** Waited too long for a state (the device did not reach `active` in time). */
  timeout: 7,
  /** A required tool is not installed (Moddable SDK / mcconfig for `flash`). */
  missingTool: 8,
} as const;

export const EXIT_HELP = `Exit codes:
  0 ok        1 failure (unexpected)   2 usage (flags, missing configuration)
  3 device or console error            4 chain error (unreachable, revert, funds, authorisation)
  5 refused (already provisioned, confirmation declined or mismatched)
  6 receiver/relay API error           7 timed out waiting for the device
  8 missing tool (Moddable SDK for flash)`;

/** An error the CLI reports as one clear message (plus an optional hint) and exits with `exit`. */
export class CliError extends Error {
  constructor(readonly exit: number, readonly code: string, message: string, readonly hint?: string) {
    super(message);
  }
}

export const usageError = (message: string, hint?: string) => new CliError(EXIT.usage, 'usage', message, hint);
export const refused = (code: string, message: string, hint?: string) => new CliError(EXIT.refused, code, message, hint);
export const chainError = (code: string, message: string, hint?: string) => new CliError(EXIT.chain, code, message, hint);
export const serviceError = (code: string, message: string, hint?: string) => new CliError(EXIT.service, code, message, hint);

/** Set once a command printed its JSON result, so a later error adds no second JSON object to stdout. */
export const printed = { result: false };
