/** Layer decompression detected by magic bytes: gzip (node:zlib), zstd (the `zstd` tool), or plain tar. */
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { AbortedError, BhattiError, CorruptLayerError, UnsupportedImageError } from '../errors.js';

const XZ = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);

export type Compression = 'gzip' | 'zstd' | 'none';

export interface DecompressOptions {
  /** Names the layer in error messages. */
  digest: string;
  signal?: AbortSignal;
}

/** Identifies the compression of a layer from its first bytes. */
export function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32BE(0) === 0x28b52ffd) return 'zstd';
  return 'none';
}

/** Returns the uncompressed bytes of a layer as a stream; nothing is buffered beyond stream chunks. */
export function decompress(input: AsyncIterable<unknown>, opts: DecompressOptions): Readable {
  return Readable.from(decompressChunks(input, opts), { objectMode: false, highWaterMark: 64 * 1024 });
}

async function* decompressChunks(input: AsyncIterable<unknown>, opts: DecompressOptions): AsyncGenerator<Buffer> {
  const it = input[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let headLen = 0;
  let ended = false;
  try {
    while (headLen < 6) {
      const r = await it.next();
      if (r.done) {
        ended = true;
        break;
      }
      const c = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
      chunks.push(c);
      headLen += c.length;
    }
    const head = Buffer.concat(chunks);
    async function* rest(): AsyncGenerator<Buffer> {
      if (head.length) yield head;
      while (!ended) {
        const r = await it.next();
        if (r.done) return;
        yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
      }
    }
    const kind = detectCompression(head);
    if (head.subarray(0, 6).equals(XZ) || head.subarray(0, 3).toString('latin1') === 'BZh') {
      throw new UnsupportedImageError(`layer ${opts.digest} is xz- or bzip2-compressed; only gzip and zstd layers are supported`);
    }
    if (kind === 'none') yield* rest();
    else if (kind === 'gzip') yield* gunzip(rest(), opts);
    else yield* unzstd(rest(), opts);
  } finally {
    await it.return?.();
  }
}

async function* gunzip(source: AsyncIterable<Buffer>, opts: DecompressOptions): AsyncGenerator<Buffer> {
  const z = createGunzip();
  const feeding = pipeline(Readable.from(source, { objectMode: false }), z).catch(() => undefined);
  try {
    for await (const chunk of z) yield chunk as Buffer;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e?.code === 'string' && e.code.startsWith('Z_')) {
      throw new CorruptLayerError(opts.digest, `gzip data is invalid (${e.message})`, { cause: err });
    }
    throw err;
  } finally {
    z.destroy();
    await feeding;
  }
}

async function* unzstd(source: AsyncIterable<Buffer>, opts: DecompressOptions): AsyncGenerator<Buffer> {
  const child = spawn('zstd', ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  const exited = new Promise<{ code: number | null; error?: NodeJS.ErrnoException }>((resolve) => {
    child.once('error', (error: NodeJS.ErrnoException) => resolve({ code: null, error }));
    child.once('close', (code) => resolve({ code }));
  });
  const feeding = pipeline(Readable.from(source, { objectMode: false }), child.stdin).catch((err: unknown) => err);
  const onAbort = (): void => {
    child.kill('SIGKILL');
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  let done = false;
  try {
    let readErr: unknown;
    try {
      for await (const chunk of child.stdout) yield chunk as Buffer;
    } catch (err) {
      readErr = err;
    }
    const { code, error } = await exited;
    const feedErr = await feeding;
    if (error?.code === 'ENOENT') {
      throw new UnsupportedImageError(`layer ${opts.digest} is zstd-compressed and the zstd tool is missing; install the Debian package "zstd"`);
    }
    if (opts.signal?.aborted) throw new AbortedError();
    if (feedErr instanceof BhattiError) throw feedErr;
    if (code !== 0) {
      const detail = stderr.trim().split('\n').pop() || `zstd exited with code ${code}`;
      throw new CorruptLayerError(opts.digest, `zstd data is invalid (${detail})`);
    }
    if (feedErr) throw feedErr;
    if (readErr) throw readErr;
    done = true;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    if (!done && child.exitCode === null) child.kill('SIGKILL');
  }
}
