/**
 * The named quantities a reading carries and their units (PROTOCOL.md §7: at least `t`, plus e.g. `temp` in °C
 * and `rh` in %). Displays (dashboard axes, CLI tables, exports) label values with these; a quantity not listed
 * here is shown without a unit.
 */
export const QUANTITY_UNITS: Readonly<Record<string, string>> = Object.freeze({
  t: 's', // unix seconds, from the device's (unauthenticated, advisory) clock
  temp: '°C',
  rh: '%',
});

/** The unit of a quantity, or undefined (own keys only: a device may name a value `constructor`). */
export function unitOf(quantity: string): string | undefined {
  return Object.prototype.hasOwnProperty.call(QUANTITY_UNITS, quantity) ? QUANTITY_UNITS[quantity] : undefined;
}

/** `temp (°C)`, or the bare name for a quantity without a known unit. */
export function labelOf(quantity: string): string {
  const unit = unitOf(quantity);
  return unit ? `${quantity} (${unit})` : quantity;
}
