// Mirrors the Moddable SDK's typings/embedded_network/interface/wifi.d.ts (MODDABLE.md §3):
// new WiFi({onChanged}), connect({SSID, password}), .address once an address is assigned. Errors on lin.
declare module "embedded:network/interface/wifi" {
  interface WiFiOptions { onChanged?: (property: "connection" | "address") => void }
  class WiFi {
    constructor(options: WiFiOptions);
    connect(options: { SSID: string; password?: string }): void;
    disconnect(): void;
    close(): void;
    readonly address: string | undefined;
  }
  export { WiFi as default };
}
