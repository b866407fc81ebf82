import { mkdir, mkdtemp, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { removeQuietly } from '../util/fs.js';

/** `<pid>-<6 random chars>`, as mkdtemp makes them. */
const SCRATCH_NAME = /^(\d+)-[A-Za-z0-9]{6}$/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Scratch directories live under `<data>/tmp/<pid>-<random>` so that a later start can
 * remove exactly those left by processes that died (crash, SIGKILL, power loss)
 * without touching the scratch space of a concurrent live process.
 */
export class TempArea {
  constructor(readonly root: string) {}

  /** Creates a private (0700) scratch directory for one operation. */
  async create(): Promise<string> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    return mkdtemp(join(this.root, `${process.pid}-`));
  }

  /** Removes scratch directories whose owning process is gone. Returns how many were removed. */
  async sweep(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const name of names) {
      // Only what create() makes is ours to remove; anything else in the directory is left alone.
      const m = SCRATCH_NAME.exec(name);
      if (!m) continue;
      const pid = Number(m[1]);
      if (pid === process.pid || alive(pid)) continue;
      await removeQuietly(join(this.root, name));
      removed++;
    }
    return removed;
  }
}
