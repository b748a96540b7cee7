// Our native modules (devices/sensor/native): tiny frozen façades over C.
declare module "iotkx/hwrandom" {
  const HardwareRandom: {
    /** Fill with esp_fill_random() (ESP32: the native side brackets it with the bootloader entropy source only while Wi-Fi is not initialised; `rfOff` is ignored), the OS RNG on desktops. */
    fill(buffer: ArrayBuffer, rfOff: boolean): void;
  };
  export { HardwareRandom as default };
}
declare module "iotkx/chiptemp" {
  const ChipTemperature: {
    /** Die temperature in °C (ESP32-C3/S3 temperature_sensor driver); throws where the chip has none. */
    read(): number;
  };
  export { ChipTemperature as default };
}
declare module "iotkx/restart" {
  function restart(): never;
  export { restart as default };
}
declare module "iotkx/desktop" {
  const Desktop: {
    /** Listen on 127.0.0.1 ($IOTKX_CONSOLE_PORT, or an OS-chosen port); returns the port. */
    listen(): number;
    /** Accept a waiting client; the bytes received since the last poll, or undefined. */
    poll(): ArrayBuffer | undefined;
    write(buffer: ArrayBuffer | Uint8Array): void;
    /** The host's 1-minute load average. */
    loadavg(): number;
  };
  export { Desktop as default };
}
