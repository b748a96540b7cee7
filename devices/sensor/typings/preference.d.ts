// Mirrors the Moddable SDK's typings/preference.d.ts (MODDABLE.md §3, §4). On ESP32 it is NVS:
// domain and key ≤ 15 characters, value ≤ 4000 bytes, and set() erases the key before writing.
declare module "preference" {
  type PreferenceValue = string | number | boolean | ArrayBuffer;
  const Preference: {
    set(domain: string, key: string, value: PreferenceValue): void;
    get(domain: string, key: string): PreferenceValue | undefined;
    delete(domain: string, key: string): void;
    keys(domain: string): string[];
  };
  export { Preference as default };
}
