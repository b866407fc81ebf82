import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError, BhattiError, DigestMismatchError, InvalidArgumentError, TransferError, toBhattiError } from '../errors.js';
import { fsyncPath, removeQuietly } from '../util/fs.js';
import type { BlobOpener, BlobStore, IngestOptions } from './blob-store.js';
import type { TempArea } from './temp-area.js';

const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

/**
 * Digests come from manifests, i.e. from image content: validate them strictly before
 * they become part of a host path.
 */
export function assertDigest(digest: string): void {
  if (!DIGEST.test(digest)) throw new InvalidArgumentError(`invalid digest "${digest}"`);
}

/** Blobs on the local filesystem under `<root>/<algorithm>/<hex>`, published atomically. */
export class FsBlobStore implements BlobStore {
  constructor(
    readonly root: string,
    private readonly temp: TempArea,
  ) {}

  path(digest: string): string {
    assertDigest(digest);
    const [algo, hex] = digest.split(':') as [string, string];
    return join(this.root, algo, hex);
  }

  async has(digest: string): Promise<boolean> {
    try {
      return (await stat(this.path(digest))).isFile();
    } catch {
      return false;
    }
  }

  open(digest: string): Readable {
    return createReadStream(this.path(digest));
  }

  async ingest(digest: string, size: number, open: BlobOpener, opts: IngestOptions = {}): Promise<{ cached: boolean }> {
    const finalPath = this.path(digest);
    if (!opts.refetch && (await this.has(digest))) {
      // The descriptor must describe the cached bytes exactly as it would a download.
      const have = (await stat(finalPath)).size;
      if (size >= 0 && have !== size) {
        throw new BhattiError('SIZE_MISMATCH', `blob ${digest} has ${have} bytes but its descriptor declares ${size}`);
      }
      return { cached: true };
    }
    const algo = digest.slice(0, digest.indexOf(':'));
    const dir = await this.temp.create();
    const tmpFile = join(dir, 'blob');
    const hash = createHash(algo);
    let written = 0;
    const retries = opts.retries ?? 3;
    try {
      for (let attempt = 0; ; attempt++) {
        if (opts.signal?.aborted) throw new AbortedError();
        try {
          const src = await open(written, opts.signal);
          const counter = new Transform({
            transform(chunk: Buffer, _enc, cb) {
              written += chunk.length;
              if (size >= 0 && written > size) {
                cb(new BhattiError('SIZE_MISMATCH', `blob ${digest} is larger than the ${size} bytes its descriptor declares`));
                return;
              }
              hash.update(chunk);
              opts.onProgress?.(written);
              cb(null, chunk);
            },
          });
          await pipeline(src, counter, createWriteStream(tmpFile, { flags: 'a', mode: 0o600 }), { signal: opts.signal });
          if (size >= 0 && written < size) throw new TransferError(digest, `blob ${digest} was cut short at ${written} of ${size} bytes`);
          break;
        } catch (err) {
          if (opts.signal?.aborted) throw new AbortedError();
          const e = toBhattiError(err, `downloading ${digest}`);
          // Only transfer faults are worth resuming; bad content or bad requests are final.
          const resumable = e instanceof TransferError || e.code === 'REGISTRY_UNAVAILABLE' || e.code === 'INTERNAL';
          if (!resumable || attempt >= retries) {
            if (e instanceof TransferError || !resumable) throw e;
            throw new TransferError(digest, `blob ${digest} download failed after ${attempt + 1} attempts at ${written} of ${size} bytes: ${e.message}`, { cause: err });
          }
          await sleep(250 * 2 ** attempt, undefined, { signal: opts.signal }).catch(() => undefined);
        }
      }
      const actual = `${algo}:${hash.digest('hex')}`;
      if (actual !== digest) throw new DigestMismatchError(digest, actual, 'blob');
      await mkdir(join(this.root, algo), { recursive: true, mode: 0o700 });
      await fsyncPath(tmpFile);
      await rename(tmpFile, finalPath);
      return { cached: false };
    } catch (err) {
      throw err instanceof BhattiError ? err : toBhattiError(err, `storing blob ${digest}`);
    } finally {
      await removeQuietly(dir);
    }
  }

  async delete(digest: string): Promise<void> {
    await rm(this.path(digest), { force: true });
  }

  async sweep(): Promise<void> {
    await this.temp.sweep();
  }
}
