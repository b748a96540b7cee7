/**
 * The data directory of a running system (`npm start --data-dir DIR`): claimed by one process at a time,
 * and only ever wiped when iotkx made it.
 *
 * - A directory iotkx made carries the marker file `.iotkx-data-dir`. Only such a directory (or an empty
 *   or absent one) is used; a non-empty directory without the marker is refused untouched, so
 *   `--data-dir .` or `--data-dir ~` can never wipe a repository or a home folder.
 * - `lock` holds the pid of the process using it. A second start on the same directory is refused while
 *   that pid is alive; a lock left by a dead process (a crash, a power cut) is taken over.
 * - Without `keep`, the previous run's files are removed (a new chain needs new devices) and the caller is
 *   told which; with `keep` nothing is removed and the run resumes from them.
 */
import fs from 'node:fs';
import path from 'node:path';

export const DATA_DIR_MARKER = '.iotkx-data-dir';
const LOCK = 'lock';
/** What a run writes at the top of its directory (hosts/system.ts), relay.db's WAL files included. */
const RUN_ENTRIES = /^(system\.json|deployment\.json|chain-state\.json|operator\.key|relay\.db(-wal|-shm)?|receiver|devices|lock)$/;

export class DataDirError extends Error {
  constructor(readonly code: 'foreign-dir' | 'locked' | 'not-a-dir', message: string) {
    super(message);
    this.name = 'DataDirError';
  }
}

export interface ClaimedDataDir {
  dir: string;
  /** Top-level entries of the previous run that were removed (empty with `keep` or a new directory). */
  wiped: string[];
  /** True when `keep` found a previous run's files to resume from. */
  resumed: boolean;
  /** The pid of a dead process whose lock was taken over, if any. */
  staleLockPid?: number;
  /** Removes the lock (only if it is still ours). */
  release(): void;
}

/** True if a process with this pid exists (EPERM: it exists but belongs to someone else). */
function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function takeLock(dir: string): number | undefined {
  const file = path.join(dir, LOCK);
  let stale: number | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      // 'wx': exclusive create, so two starts racing for the directory cannot both win.
      fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
      return stale;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const pid = Number.parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
    if (pid !== process.pid && alive(pid)) {
      throw new DataDirError('locked', `another iotkx system (pid ${pid}) is using ${dir}; stop it or pass --data-dir`);
    }
    fs.rmSync(file, { force: true }); // stale: its process is gone
    if (Number.isInteger(pid) && pid > 0) stale = pid;
  }
  throw new DataDirError('locked', `could not lock ${dir}: another process keeps taking ${file}`);
}

/**
 * Claims `dir` for this process (see the module comment). Throws DataDirError with a message for the user
 * when the directory is foreign or in use; in both cases nothing in it was changed.
 */
export function claimDataDir(dir: string, opts: { keep?: boolean } = {}): ClaimedDataDir {
  dir = path.resolve(dir);
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) {
    throw new DataDirError('not-a-dir', `${dir} is not a directory; pass --data-dir with a directory iotkx may use`);
  }
  fs.mkdirSync(dir, { recursive: true });
  const marker = path.join(dir, DATA_DIR_MARKER);
  const entries = fs.readdirSync(dir);
  if (!fs.existsSync(marker)) {
    // A run directory written before the marker existed holds only iotkx's own names: adopt it.
    if (entries.length > 0 && !entries.every((e) => RUN_ENTRIES.test(e))) {
      throw new DataDirError('foreign-dir',
        `${dir} is not empty and was not made by iotkx (no ${DATA_DIR_MARKER} in it); refusing to use or wipe it. ` +
        'Pass --data-dir with a new or empty directory.');
    }
    fs.writeFileSync(marker, 'This directory was made by iotkx (npm start); iotkx may wipe it.\n');
  }
  const staleLockPid = takeLock(dir);
  const previous = fs.readdirSync(dir).filter((e) => e !== DATA_DIR_MARKER && e !== LOCK).sort();
  let wiped: string[] = [];
  if (!opts.keep) {
    for (const e of previous) fs.rmSync(path.join(dir, e), { recursive: true, force: true });
    wiped = previous;
  }
  return {
    dir,
    wiped,
    resumed: Boolean(opts.keep) && previous.length > 0,
    ...(staleLockPid !== undefined ? { staleLockPid } : {}),
    release() {
      const file = path.join(dir, LOCK);
      try {
        if (Number.parseInt(fs.readFileSync(file, 'utf8'), 10) === process.pid) fs.rmSync(file, { force: true });
      } catch { /* already gone */ }
    },
  };
}
