import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm, utimes } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
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

/** sha256 of a file, streamed, as `sha256:<hex>`. */
export async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash, { signal });
  return `sha256:${hash.digest('hex')}`;
}

/** Names the stores give their files: `<uuid>.ext4`. Sweeps touch nothing else. */
export const STORE_FILE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.ext4$/;
/** Sandbox directories are named by UUID. */
export const UUID_NAME = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
