// Our native modules (devices/sensor/native): tiny frozen façades over C.
declare module "iotkx/hwrandom" {
  const HardwareRandom: {
    /** Fill with esp_fill_random(). `rfOff`: bracket with bootloader_random_enable/disable (no Wi-Fi yet). */
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
