// The dashboard page (runs in the browser; esbuild bundles it with uPlot, assets.ts). Read-only: it polls the
// receiver's JSON (same origin, so a bearer cookie set by /?token= rides along) and redraws. Everything a
// device sent is shown with textContent, never parsed as HTML: decrypted values are authentic, not trusted.
import uPlot from 'uplot';
import { labelOf, unitOf } from '../../../lib/quantities.js';

/** Milliseconds between polls: readings arrive every few seconds at most (informative choice). */
const POLL_MS = 2000;
/** Points kept per chart; older ones scroll off (bounded memory on a long-open page). */
const MAX_POINTS = 5000;

interface LastReading { epoch: string; seq: string; values: Record<string, unknown>; receivedAt: string }
interface Device {
  device: string; epoch: string | null; pendingEpoch: string | null; state: string; keyVersion: number | null;
  readings: number; lastSeq: string | null; gaps: number; keyAgeSec: number | null; replaysRefused: number; refused: number;
  lastReading: LastReading | null;
}
interface Overview {
  now: string; lastBlock: number | null; parked: number; devices: Device[];
  /** exchange.ts WatcherStatus: why the receiver waits. */
  watcher: { idle: boolean; headIdleSec: number | null; reason: string | null } | null;
}
interface EpochHistory {
  epoch: string; state: string; keyVersion: number; offerTx: string; offerBlock: number | null; actionTx: string | null;
  acceptBlock: number | null; rejectReason: number | null; readings: number; replaysRefused: number; gaps: number;
}

const $ = <T extends HTMLElement>(sel: string) => document.querySelector(sel) as T;

function el(tag: string, text?: string, attrs: Record<string, string> = {}): HTMLElement {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function age(sec: number | null): string {
  if (sec === null) return '–';
  if (sec < 120) return `${sec} s`;
  if (sec < 7200) return `${Math.floor(sec / 60)} min`;
  if (sec < 172800) return `${Math.floor(sec / 3600)} h`;
  return `${Math.floor(sec / 86400)} d`;
}

function short(hex: string | null): string {
  return hex ? `${hex.slice(0, 10)}…${hex.slice(-6)}` : '–';
}

/** Numeric quantities of a reading, `t` (the device's clock) left out: it is the x axis's business. */
function quantities(values: Record<string, unknown>): [string, number][] {
  return Object.entries(values).filter(([k, v]) => k !== 't' && typeof v === 'number' && Number.isFinite(v)) as [string, number][];
}

function describe(r: LastReading | null, now: number): string {
  if (!r) return '–';
  const q = quantities(r.values).map(([k, v]) => `${k} ${Math.round(v * 100) / 100}${unitOf(k) ? ` ${unitOf(k)}` : ''}`).join(', ');
  return `${q || '(no numeric values)'} · seq ${r.seq} · ${age(Math.max(0, Math.round((now - Date.parse(r.receivedAt)) / 1000)))} ago`;
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { cache: 'no-store', credentials: 'same-origin' });
  if (res.status === 401) throw new Error('401: this receiver needs its token: open /?token=<token> once');
  if (!res.ok) throw new Error(`${res.status} from ${url}`);
  return (await res.json()) as T;
}

// ---- per-device readings, fetched incrementally with §9's cursor ----

class Series {
  constructor(readonly device: string) {}
  cursor: string | null = null;
  xs: number[] = [];
  cols = new Map<string, (number | null)[]>();

  add(readings: LastReading[]): void {
    for (const r of readings) {
      const q = quantities(r.values);
      for (const [k] of q) if (!this.cols.has(k)) this.cols.set(k, this.xs.map(() => null));
      // x: when the device measured (`t`, §7, Unix seconds); receipt time only if `t` is missing. Readings
      // reach the receiver in bursts (relay pulls, parked ones after an acceptance), so receipt time would bunch them.
      const t = r.values.t;
      this.xs.push(typeof t === 'number' && Number.isFinite(t) ? t : Date.parse(r.receivedAt) / 1000);
      const byKey = new Map(q);
      for (const [k, col] of this.cols) col.push(byKey.get(k) ?? null);
    }
    // uPlot needs ascending x; a device clock set back breaks seq order, so re-sort when that happens.
    if (this.xs.some((x, i) => i > 0 && x < this.xs[i - 1])) {
      const order = this.xs.map((_, i) => i).sort((i, j) => this.xs[i] - this.xs[j]);
      this.xs = order.map((i) => this.xs[i]);
      for (const [k, col] of this.cols) this.cols.set(k, order.map((i) => col[i]));
    }
    const extra = this.xs.length - MAX_POINTS;
    if (extra > 0) {
      this.xs.splice(0, extra);
      for (const col of this.cols.values()) col.splice(0, extra);
    }
  }
}

const COLORS = ['#d9480f', '#1971c2', '#2f9e44', '#9c36b5', '#e67700', '#0c8599'];

let selected: string | null = decodeURIComponent(location.hash.slice(1)) || null;
let series: Series | null = null;
let chart: uPlot | null = null;
let chartKeys = '';

async function pullReadings(s: Series): Promise<void> {
  for (;;) {
    const q = new URLSearchParams({ limit: '1000' });
    if (s.cursor) q.set('after', s.cursor);
    const page = await getJson<{ readings: LastReading[]; next: string }>(`/v1/devices/${s.device}/readings?${q}`);
    if (series !== s) return; // another device was picked meanwhile
    s.add(page.readings);
    s.cursor = page.next;
    if (page.readings.length < 1000) return;
  }
}

function drawChart(): void {
  const box = $('#chart');
  if (!series) return;
  const keys = [...series.cols.keys()];
  const data = [series.xs, ...keys.map((k) => series!.cols.get(k)!)] as uPlot.AlignedData;
  box.dataset.points = String(series.xs.length);
  box.dataset.series = keys.join(',');
  $('#chart-caption').textContent = series.xs.length
    ? `${series.xs.length} plotted (${keys.join(', ') || 'no numeric values'}), by time measured`
    : 'none yet';
  const width = Math.max(320, box.clientWidth || 800);
  if (chart && chartKeys === keys.join(',')) {
    chart.setData(data);
    return;
  }
  chart?.destroy();
  chartKeys = keys.join(',');
  const opts: uPlot.Options = {
    width,
    height: 280,
    scales: { x: { time: true } },
    hooks: { draw: [showLatest], setCursor: [showLatest] },
    series: [{}, ...keys.map((k, i) => ({ label: labelOf(k), scale: k, stroke: COLORS[i % COLORS.length], width: 2, points: { show: true, size: 5 } }))],
    axes: [
      {},
      ...keys.slice(0, 2).map((k, i) => ({ scale: k, label: labelOf(k), side: i === 0 ? 3 : 1, stroke: COLORS[i], grid: { show: i === 0 } })),
    ],
  };
  chart = new uPlot(opts, data, box);
}

/** Without a pointer over the chart the legend shows the latest reading's values, not uPlot's "--". */
function showLatest(u: uPlot): void {
  const n = u.data[0]?.length ?? 0;
  if (n === 0 || (u.cursor.left ?? -1) >= 0) return;
  u.setLegend({ idx: n - 1 });
}

interface DeviceHistory { status: string; revokedBlock: number | null; refused: Record<string, number>; epochs: EpochHistory[] }

function renderHistory(h: DeviceHistory): void {
  const body = $('#history tbody');
  // A revocation is part of the history: the device may still be sending, but nothing it seals under the
  // epochs accepted before it is taken any more (§5.6).
  const revoked = h.status === 'revoked'
    ? [el('tr', undefined, { class: 'revoked' })]
    : [];
  if (revoked.length) {
    const still = h.refused.revoked ? ` (${h.refused.revoked} of its readings refused since)` : '';
    revoked[0].append(el('td', `revoked${h.revokedBlock !== null ? ` at block ${h.revokedBlock}` : ''}: its readings are refused${still}; only the receiver can enroll it again, and only epochs accepted after that count`, { colspan: '10', class: 'state-revoked' }));
  }
  body.replaceChildren(...revoked, ...h.epochs.map((e) => {
    const tr = el('tr', undefined, { 'data-epoch': e.epoch });
    const reason = e.rejectReason ? ` (reason ${e.rejectReason})` : '';
    tr.append(
      el('td', e.epoch), el('td', e.state + reason, { class: `state-${e.state}` }), el('td', String(e.keyVersion)),
      el('td', e.offerBlock === null ? '–' : String(e.offerBlock)), el('td', short(e.offerTx), { title: e.offerTx, class: 'hash' }),
      el('td', e.acceptBlock === null ? '–' : String(e.acceptBlock)),
      el('td', short(e.actionTx), { title: e.actionTx ?? '', class: 'hash' }),
      el('td', String(e.readings)), el('td', String(e.gaps)), el('td', String(e.replaysRefused)),
    );
    return tr;
  }));
}

function renderDevices(o: Overview): void {
  const now = Date.parse(o.now);
  const body = $('#devices tbody');
  body.replaceChildren(...o.devices.map((d) => {
    const tr = el('tr', undefined, { 'data-device': d.device, tabindex: '0' });
    if (d.device === selected) tr.classList.add('selected');
    const epoch = d.pendingEpoch ? `${d.epoch ?? '–'} (offered ${d.pendingEpoch})` : d.epoch ?? '–';
    tr.append(
      el('td', d.device, { class: 'address' }), el('td', d.state, { class: `state-${d.state}` }), el('td', epoch),
      el('td', age(d.keyAgeSec)), el('td', String(d.readings), { class: 'readings' }),
      el('td', describe(d.lastReading, now), { class: 'last' }), el('td', String(d.gaps)), el('td', String(d.replaysRefused)),
      el('td', String(d.refused), { class: d.refused > 0 ? 'refused warn' : 'refused' }),
    );
    const pick = () => select(d.device);
    tr.addEventListener('click', pick);
    tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') pick(); });
    return tr;
  }));
  $('#empty').hidden = o.devices.length > 0;
}

/** A fresh chart for `selected` unless the one held is already its. */
function ensureSeries(): Series {
  if (series?.device === selected) return series;
  series = new Series(selected!);
  chart?.destroy();
  chart = null;
  chartKeys = '';
  return series;
}

function select(device: string): void {
  if (device === selected) return;
  selected = device;
  history.replaceState(null, '', `#${device}`);
  ensureSeries();
  for (const tr of document.querySelectorAll('#devices tbody tr')) tr.classList.toggle('selected', (tr as HTMLElement).dataset.device === device);
  void refresh();
}

let busy = false;
async function refresh(): Promise<void> {
  if (busy) return;
  busy = true;
  const status = $('#status');
  try {
    const o = await getJson<Overview>('/v1/dashboard');
    if (!selected && o.devices.length) selected = o.devices[0].device;
    if (selected && !o.devices.some((d) => d.device === selected)) selected = o.devices[0]?.device ?? null;
    renderDevices(o);
    const detail = $('#detail');
    detail.hidden = !selected;
    if (selected) {
      const device = selected;
      const s = ensureSeries();
      $('#detail-address').textContent = device;
      // Same origin: the bearer cookie (dashboard/auth.ts) rides along with the download as with every poll.
      $('#download-csv').setAttribute('href', `/v1/devices/${device}/readings?format=csv`);
      $('#download-jsonl').setAttribute('href', `/v1/devices/${device}/readings?format=jsonl`);
      const [h] = await Promise.all([getJson<DeviceHistory>(`/v1/devices/${device}/history`), pullReadings(s)]);
      if (device === selected) {
        renderHistory(h);
        drawChart();
      }
    }
    status.textContent = `live · updated ${new Date().toLocaleTimeString()} · block ${o.lastBlock ?? '–'} · parked envelopes ${o.parked}` +
      (o.watcher?.reason ? ` · ${o.watcher.reason}` : '');
    status.className = o.watcher?.idle || (o.watcher?.headIdleSec ?? 0) >= 60 ? 'warn' : 'ok';
  } catch (e) {
    status.textContent = `not updating: ${(e as Error).message} (retrying)`;
    status.className = 'error';
  } finally {
    busy = false;
  }
}

window.addEventListener('resize', () => chart?.setSize({ width: Math.max(320, $('#chart').clientWidth), height: 280 }));
void refresh();
setInterval(() => void refresh(), POLL_MS);
