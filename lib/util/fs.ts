import { open, rename, rm, utimes } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Flushes a file (or directory) to disk. */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Publishes a finished file atomically: fsync it, rename it into place, fsync the directory,
 * so a crash leaves either the old state or the complete new file, never a partial one.
 */
export async function publishFile(tmpPath: string, finalPath: string): Promise<void> {
  await fsyncPath(tmpPath);
  // Fresh mtime marks the file as just published, so a concurrent orphan sweep leaves it alone.
  const now = new Date();
  await utimes(tmpPath, now, now);
  await rename(tmpPath, finalPath);
  await fsyncPath(dirname(finalPath));
}

export async function removeQuietly(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true }).catch(() => undefined);
}
