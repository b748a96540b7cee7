/** Markdown tables for the benchmark printouts and bench/RESULTS.md. */

/** A titled table (left-aligned). */
export function table(title: string, header: string[], rows: string[][]): string {
  return [`### ${title}`, '', `| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`), ''].join('\n');
}

/** An untitled table whose figure columns (all but the first) are right-aligned. */
export function markdown(r: { header: string[]; rows: string[][] }): string {
  const right = r.header.map((_, i) => (i === 0 ? '---' : '---:'));
  return [r.header, right, ...r.rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
}
