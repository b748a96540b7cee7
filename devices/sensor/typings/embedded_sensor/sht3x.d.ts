// The SDK has no embedded:sensor typings (MODDABLE.md §3): this is ours, for
// $(MODULES)/drivers/sensors/sht3x (ECMA-419 Humidity-Temperature class pattern).
// sample() leaves a field out when its CRC fails, and blocks about 150 ms.
declare module "embedded:sensor/Humidity-Temperature/SHT3x" {
  interface SHT3xSample {
    thermometer?: { temperature: number };
    hygrometer?: { humidity: number };
  }
  class SHT3x {
    constructor(options: { sensor: object; onError?: (error: unknown) => void });
    sample(): SHT3xSample;
    close(): void;
  }
  export { SHT3x as default };
}
