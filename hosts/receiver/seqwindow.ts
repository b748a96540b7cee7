// Seen-seq tracking for one (device, epoch) (PROTOCOL.md §7): a high-water mark plus a window of missing
// seqs kept as closed intervals. A seq above the mark advances it (the skipped ones become gaps); a seq in a
// gap fills it (a late authentic envelope); anything else is a replay. Gaps that fall out of the window are
// counted as lost for good (a seq there is refused as too old), so state stays bounded whatever seq jumps a
// device makes (seq is a uint64: a jump of 2^63 is one interval, not 2^63 entries).

/** Default window: seqs more than this far below the mark are no longer accepted (informative choice). */
export const DEFAULT_SEQ_WINDOW = 4096n;

export interface SeqState {
  /** Highest accepted seq; 0 before the first (seq starts at 1, §7). */
  hwm: bigint;
  /** Missing seqs inside the window, as sorted disjoint closed intervals [lo, hi]. */
  gaps: [bigint, bigint][];
  /** Missing seqs that left the window (never fillable). */
  lost: bigint;
}

export type SeqVerdict = 'advance' | 'fill' | 'replay' | 'too-old';

export const emptySeqState = (): SeqState => ({ hwm: 0n, gaps: [], lost: 0n });

export function classifySeq(s: SeqState, seq: bigint, window = DEFAULT_SEQ_WINDOW): SeqVerdict {
  if (seq > s.hwm) return 'advance';
  if (s.gaps.some(([lo, hi]) => seq >= lo && seq <= hi)) return 'fill';
  return s.hwm >= window && seq <= s.hwm - window ? 'too-old' : 'replay';
}

/** The state after accepting `seq` (call only for 'advance' or 'fill'). Pure: returns a new object. */
export function applySeq(s: SeqState, seq: bigint, window = DEFAULT_SEQ_WINDOW): SeqState {
  let gaps = s.gaps.map(([lo, hi]) => [lo, hi] as [bigint, bigint]);
  let hwm = s.hwm;
  let lost = s.lost;
  if (seq > hwm) {
    if (seq > hwm + 1n) gaps.push([hwm + 1n, seq - 1n]);
    hwm = seq;
  } else {
    const out: [bigint, bigint][] = [];
    for (const [lo, hi] of gaps) {
      if (seq < lo || seq > hi) out.push([lo, hi]);
      else {
        if (lo <= seq - 1n) out.push([lo, seq - 1n]);
        if (seq + 1n <= hi) out.push([seq + 1n, hi]);
      }
    }
    gaps = out;
  }
  // Seqs ≤ floor are out of the window: move their gaps to `lost`.
  const floor = hwm >= window ? hwm - window : 0n;
  const kept: [bigint, bigint][] = [];
  for (const [lo, hi] of gaps) {
    if (hi <= floor) lost += hi - lo + 1n;
    else if (lo <= floor) {
      lost += floor - lo + 1n;
      kept.push([floor + 1n, hi]);
    } else kept.push([lo, hi]);
  }
  return { hwm, gaps: kept, lost };
}

export function gapCount(s: SeqState): bigint {
  return s.gaps.reduce((n, [lo, hi]) => n + (hi - lo + 1n), s.lost);
}

export function seqStateToJson(s: SeqState): string {
  return JSON.stringify({ hwm: s.hwm.toString(), gaps: s.gaps.map(([a, b]) => [a.toString(), b.toString()]), lost: s.lost.toString() });
}

export function seqStateFromJson(text: string | null | undefined): SeqState {
  if (!text) return emptySeqState();
  const j = JSON.parse(text) as { hwm: string; gaps: [string, string][]; lost: string };
  return { hwm: BigInt(j.hwm), gaps: j.gaps.map(([a, b]) => [BigInt(a), BigInt(b)]), lost: BigInt(j.lost) };
}
