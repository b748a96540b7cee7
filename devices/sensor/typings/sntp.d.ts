// Mirrors the Moddable SDK's typings/sntp.d.ts and time.d.ts (manifest_net gives both on esp32 and lin).
declare module "sntp" {
  type SNTPCallback = (message: -1 | 1 | 2, value?: number) => void;
  class SNTP {
    static readonly time: 1;
    static readonly retry: 2;
    static readonly error: -1;
    constructor(options: { host: string }, callback: SNTPCallback);
  }
  export { SNTP as default };
}
declare module "time" {
  const Time: { set(seconds: number): void; timezone: number; dst: number; ticks: number };
  export { Time as default };
}
