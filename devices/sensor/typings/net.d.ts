// Mirrors the Moddable SDK's typings/net.d.ts (MODDABLE.md §3).
declare module "net" {
  const Net: {
    get(property: "IP" | "MAC" | "SSID" | "BSSID" | "RSSI" | "DNS", interfaceName?: string): string | number | undefined;
    resolve(host: string, callback: (name: string, address?: string) => void): void;
  };
  export { Net as default };
}
