// Mirrors the Moddable SDK's typings/timer.d.ts (MODDABLE.md §3).
declare module "timer" {
  type TimerCallback = (id: Timer) => void;
  interface Timer { readonly __timer: unique symbol }
  const Timer: {
    set(callback: TimerCallback, milliseconds?: number, repeat?: number): Timer;
    repeat(callback: TimerCallback, milliseconds: number): Timer;
    schedule(id: Timer, milliseconds?: number, repeat?: number): void;
    clear(id: Timer): void;
    delay(milliseconds: number): void;
  };
  export { Timer as default };
}
