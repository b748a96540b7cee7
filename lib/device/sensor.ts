/**
 * What the device measures. A driver (SHT3x on the board, a synthetic one in the
 * simulator) returns named quantities, e.g. {temp: °C, rh: %} (PROTOCOL.md §7);
 * the Device adds `t`. A value it could not read is left out, never NaN.
 */
export interface Sensor {
  read(): Record<string, number>;
}
