/**
 * Streaming tar reader (ustar, GNU long names/links, pax `x`/`g` records, base-256 numbers).
 * Our own because tar-stream decodes pax values as UTF-8, which corrupts binary xattrs such as security.capability.
 */
import { Readable } from 'node:stream';
import { CorruptLayerError, UnsupportedImageError, throwIfAborted } from '../errors.js';
import { ByteSource } from './byte-source.js';
import { escapeText as q } from './paths.js';
import { BLOCK, F, PAX_XATTR, checksums, fieldBytes, padding, parseNumber, parsePax } from './tar-format.js';
import type { EntryType, TarEntry, TarHeader } from './types.js';

export interface ReadTarOptions {
  /** Names the archive in error messages (a layer digest). */
  digest?: string;
  signal?: AbortSignal;
}

/** Largest pax or GNU long-name record we accept; they are metadata, not content. */
const MAX_META = 16 * 1024 * 1024;
const BODY_CHUNK = 64 * 1024;
/** uids, gids and device numbers are 32-bit in Linux and ext4. */
const MAX_U32 = 2 ** 32 - 1;
/** Timestamps beyond ±2^41 s (about 70,000 years) are nonsense; past ±8.64e12 s a JS Date is invalid. */
const MAX_MTIME_SECONDS = 2 ** 41;

const TYPES: Record<string, EntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
  D: 'directory', // GNU dumpdir: a directory whose body lists its contents
};

/**
 * Yields the entries of a tar stream in order. Names are as stored (normalise them with
 * `normalizeEntryPath`). A regular file's `body` streams straight from the source and must be
 * consumed (or abandoned) before asking for the next entry; what is left is skipped.
 * The source is read to its end, so a hash taken over it covers every byte.
 */
export async function* readTar(source: AsyncIterable<unknown>, opts: ReadTarOptions = {}): AsyncGenerator<TarEntry> {
  const digest = opts.digest ?? 'archive';
  const corrupt = (detail: string): CorruptLayerError => new CorruptLayerError(digest, detail);
  const src = new ByteSource(source);
  const global = new Map<string, Buffer>();
  let local = new Map<string, Buffer>();
  let longName: string | undefined;
  let longLink: string | undefined;

  const readMeta = async (size: number, what: string): Promise<Buffer> => {
    if (size < 0) throw corrupt(`${what} record has a negative size ${size}`);
    if (size > MAX_META) throw corrupt(`${what} record of ${size} bytes is too large`);
    const padded = size + padding(size);
    const data = padded === 0 ? Buffer.alloc(0) : await src.readExact(padded);
    if (data === null || data.length < padded) throw corrupt(`archive ends inside a ${what} record`);
    return Buffer.from(data.subarray(0, size));
  };

  try {
    for (;;) {
      throwIfAborted(opts.signal);
      const block = await src.readExact(BLOCK);
      // Go's archive/tar and GNU tar accept an archive that stops at an entry boundary without the zero blocks.
      if (block === null) break;
      if (block.length < BLOCK) throw corrupt('archive ends inside a header');
      if (block.every((b) => b === 0)) {
        await src.drain();
        break;
      }
      const stored = parseNumber(block.subarray(148, 156));
      const sums = checksums(block);
      if (stored === undefined || (stored !== sums.unsigned && stored !== sums.signed)) {
        throw corrupt(`header checksum mismatch (stored ${stored ?? 'unreadable'}, computed ${sums.unsigned})`);
      }
      const num = (field: readonly [number, number], name: string): number => {
        const v = parseNumber(block.subarray(field[0], field[0] + field[1]));
        if (v === undefined) throw corrupt(`bad ${name} field in header`);
        return v;
      };
      const typeflag = String.fromCharCode(block[156]!);
      const rawSize = num(F.size, 'size');

      if (typeflag === 'x' || typeflag === 'g' || typeflag === 'X') {
        const records = parsePax(await readMeta(rawSize, 'pax'));
        if (typeof records === 'string') throw corrupt(records);
        if (typeflag === 'g') for (const [k, v] of records) global.set(k, v);
        else local = records;
        continue;
      }
      if (typeflag === 'L' || typeflag === 'K') {
        const data = await readMeta(rawSize, typeflag === 'L' ? 'GNU long name' : 'GNU long link');
        const nul = data.indexOf(0);
        const text = data.toString('utf8', 0, nul === -1 ? data.length : nul);
        if (typeflag === 'L') longName = text;
        else longLink = text;
        continue;
      }

      // Per-entry records override global ones; an empty per-entry value cancels a global key.
      const pax = new Map(global);
      for (const [k, v] of local) {
        if (v.length === 0 && !k.startsWith(PAX_XATTR)) pax.delete(k);
        else pax.set(k, v);
      }
      local = new Map();
      const text = (k: string): string | undefined => pax.get(k)?.toString('utf8');
      const paxNum = (k: string, fallback: number): number => {
        const t = text(k);
        if (t === undefined) return fallback;
        if (!/^[0-9]+$/.test(t)) throw corrupt(`bad pax ${k} "${q(t)}"`);
        return Number(t);
      };
      if (typeflag === 'S' || [...pax.keys()].some((k) => k.startsWith('GNU.sparse.'))) {
        throw new UnsupportedImageError(`layer ${digest} contains a GNU sparse file, which is not supported`);
      }

      const magic = block.toString('latin1', 257, 263);
      let name = fieldBytes(block, F.name).toString('utf8');
      if (magic === 'ustar\0') {
        const prefix = fieldBytes(block, F.prefix).toString('utf8');
        if (prefix) name = `${prefix}/${name}`;
      }
      name = text('path') ?? longName ?? name;
      const linkname = text('linkpath') ?? longLink ?? fieldBytes(block, F.linkname).toString('utf8');
      longName = undefined;
      longLink = undefined;

      let type = TYPES[typeflag];
      if (type === 'file' && typeflag !== '7' && name.endsWith('/')) type = 'directory'; // pre-POSIX directories
      /** A header or pax number must lie in [0, max]; out of range it would break everything downstream. */
      const ranged = (field: string, value: number, max: number): number => {
        if (!Number.isSafeInteger(value) || value < 0 || value > max) {
          const shown = text(field) ?? String(value);
          throw corrupt(`entry "${q(name)}" has an out-of-range ${field} ${q(shown.length > 40 ? `${shown.slice(0, 40)}…` : shown)}`);
        }
        return value;
      };
      const size = ranged('size', paxNum('size', rawSize), Number.MAX_SAFE_INTEGER);

      if (type === undefined) {
        // Volume labels, multi-volume continuations and the like carry nothing for a root fs.
        await skipBody(src, size, corrupt);
        continue;
      }

      const header: TarHeader = {
        name,
        type,
        mode: num(F.mode, 'mode') & 0o7777,
        uid: ranged('uid', paxNum('uid', num(F.uid, 'uid')), MAX_U32),
        gid: ranged('gid', paxNum('gid', num(F.gid, 'gid')), MAX_U32),
        size: type === 'file' ? size : 0,
        mtime: parseMtime(text('mtime'), num(F.mtime, 'mtime'), (d) => corrupt(`entry "${q(name)}" has ${d}`)),
      };
      const uname = text('uname') ?? fieldBytes(block, F.uname).toString('utf8');
      const gname = text('gname') ?? fieldBytes(block, F.gname).toString('utf8');
      if (uname) header.uname = uname;
      if (gname) header.gname = gname;
      if (type === 'link' || type === 'symlink') header.linkname = linkname;
      if (type === 'character-device' || type === 'block-device') {
        header.devmajor = ranged('devmajor', num(F.devmajor, 'devmajor'), MAX_U32);
        header.devminor = ranged('devminor', num(F.devminor, 'devminor'), MAX_U32);
      }
      const xattrs = readXattrs(pax);
      if (xattrs.size > 0) header.xattrs = xattrs;

      if (type !== 'file') {
        await skipBody(src, size, corrupt);
        yield { header };
        continue;
      }

      let remaining = size;
      let inflight: Promise<void> | undefined;
      const body = new Readable({
        highWaterMark: BODY_CHUNK,
        read() {
          if (inflight) return;
          const pull: Promise<void> = (async () => {
            if (remaining === 0) {
              body.push(null);
              return;
            }
            const chunk = await src.readSome(Math.min(remaining, BODY_CHUNK));
            if (chunk === null) throw corrupt(`archive ends inside the content of "${q(name)}"`);
            remaining -= chunk.length;
            inflight = undefined;
            body.push(chunk);
            if (remaining === 0) body.push(null);
          })()
            .catch((err: unknown) => {
              body.destroy(err as Error);
            })
            .finally(() => {
              if (inflight === pull) inflight = undefined;
            });
          inflight = pull;
        },
      });
      yield { header, body };
      while (inflight) await inflight;
      if (!body.readableEnded) body.destroy();
      await skipBody(src, remaining, corrupt, size);
    }
  } finally {
    await src.close();
  }
}

/** Skips `left` bytes of content plus the padding of a body of `total` bytes. */
async function skipBody(src: ByteSource, left: number, corrupt: (d: string) => Error, total = left): Promise<void> {
  const want = left + padding(total);
  if ((await src.skip(want)) < want) throw corrupt('archive ends inside an entry');
}

function parseMtime(pax: string | undefined, fallback: number, corrupt: (d: string) => Error): Date {
  const shown = (t: string): string => q(t.length > 40 ? `${t.slice(0, 40)}…` : t);
  if (pax !== undefined && !/^-?[0-9]+(\.[0-9]*)?$/.test(pax)) throw corrupt(`a bad pax mtime "${shown(pax)}"`);
  const seconds = pax === undefined ? fallback : parseFloat(pax);
  if (!Number.isFinite(seconds) || Math.abs(seconds) >= MAX_MTIME_SECONDS) {
    throw corrupt(`an out-of-range mtime ${shown(pax ?? String(fallback))}`);
  }
  return new Date(Math.round(seconds * 1000));
}

/** Collects `SCHILY.xattr.*` records (GNU tar, star, Docker) and libarchive's encoded form. */
function readXattrs(pax: Map<string, Buffer>): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const [k, v] of pax) {
    if (k.startsWith(PAX_XATTR)) out.set(k.slice(PAX_XATTR.length), Buffer.from(v));
    else if (k.startsWith('LIBARCHIVE.xattr.')) {
      out.set(decodeURIComponent(k.slice('LIBARCHIVE.xattr.'.length)), Buffer.from(v.toString('latin1'), 'base64'));
    }
  }
  return out;
}
