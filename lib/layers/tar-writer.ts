/**
 * Streaming tar writer: ustar headers, with a pax record in front when a field does not fit ustar
 * (long or non-ASCII names, big ids/sizes) and for xattrs, whose values are written as raw bytes.
 */
import { Readable } from 'node:stream';
import { BhattiError, throwIfAborted } from '../errors.js';
import { BLOCK, F, PAX_XATTR, TYPEFLAG, padding, paxRecord, writeNumber } from './tar-format.js';
import type { TarEntry, TarHeader } from './types.js';

const ZERO_BLOCKS = Buffer.alloc(2 * BLOCK);
// eslint-disable-next-line no-control-regex
const ASCII = /^[\x01-\x7f]*$/;

/** The tar name of an entry: directories end in `/`, the root is `./`. Accepts raw names (`./a/`) too. */
function tarName(h: TarHeader): string {
  const name = h.name.replace(/\/+$/, '');
  if (name === '.' || name === '') return './';
  return h.type === 'directory' ? `${name}/` : name;
}

/** Splits a long ASCII path into ustar prefix + name at a `/`, if possible. */
function splitUstar(path: string): [string, string] | undefined {
  if (path.length <= 100) return ['', path];
  for (let i = path.length - 1; i > 0; i--) {
    if (path[i] !== '/') continue;
    const prefix = path.slice(0, i);
    const rest = path.slice(i + 1);
    if (rest.length === 0 || rest.length > 100) return undefined;
    if (prefix.length <= 155) return [prefix, rest];
  }
  return undefined;
}

function writeString(block: Buffer, [off, width]: readonly [number, number], value: string): void {
  block.write(value, off, width, 'utf8');
}

function ustarBlock(h: {
  name: string;
  prefix: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  uname: string;
  gname: string;
  devmajor: number;
  devminor: number;
}): Buffer {
  const b = Buffer.alloc(BLOCK);
  writeString(b, F.name, h.name);
  writeNumber(b, F.mode, h.mode);
  writeNumber(b, F.uid, h.uid);
  writeNumber(b, F.gid, h.gid);
  writeNumber(b, F.size, h.size);
  writeNumber(b, F.mtime, h.mtime);
  b.write(h.typeflag, F.typeflag[0], 1, 'latin1');
  writeString(b, F.linkname, h.linkname);
  b.write('ustar\x0000', F.magic[0], 8, 'latin1');
  writeString(b, F.uname, h.uname);
  writeString(b, F.gname, h.gname);
  writeNumber(b, F.devmajor, h.devmajor);
  writeNumber(b, F.devminor, h.devminor);
  writeString(b, F.prefix, h.prefix);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', F.chksum[0], 8, 'latin1');
  return b;
}

/** Fits `value` into a ustar number field, or reports that pax must carry it. */
function fitsOctal(value: number, width: number): boolean {
  return Number.isInteger(value) && value >= 0 && value.toString(8).length <= width - 1;
}

/** Encodes the header blocks of one entry (a pax `x` entry first when needed). */
export function encodeHeader(h: TarHeader): Buffer {
  const records: Buffer[] = [];
  const name = tarName(h);
  let prefix = '';
  let shortName = name;
  const split = ASCII.test(name) ? splitUstar(name) : undefined;
  if (split) [prefix, shortName] = split;
  else {
    records.push(paxRecord('path', name));
    shortName = asciiFallback(name, 100);
  }
  let linkname = h.linkname ?? '';
  if (linkname.length > 100 || !ASCII.test(linkname)) {
    records.push(paxRecord('linkpath', linkname));
    linkname = asciiFallback(linkname, 100);
  }
  const size = h.type === 'file' ? h.size : 0;
  if (!fitsOctal(size, 12)) records.push(paxRecord('size', String(size)));
  if (!fitsOctal(h.uid, 8)) records.push(paxRecord('uid', String(h.uid)));
  if (!fitsOctal(h.gid, 8)) records.push(paxRecord('gid', String(h.gid)));
  const seconds = Math.floor(h.mtime.getTime() / 1000);
  // Sub-second times only survive through pax (ext4 keeps them).
  const ms = h.mtime.getTime();
  if (!fitsOctal(seconds, 12) || ms % 1000 !== 0) records.push(paxRecord('mtime', (ms / 1000).toFixed(3)));
  let uname = h.uname ?? '';
  let gname = h.gname ?? '';
  if (Buffer.byteLength(uname) > 31 || !ASCII.test(uname)) {
    records.push(paxRecord('uname', uname));
    uname = '';
  }
  if (Buffer.byteLength(gname) > 31 || !ASCII.test(gname)) {
    records.push(paxRecord('gname', gname));
    gname = '';
  }
  for (const [key, value] of h.xattrs ?? []) records.push(paxRecord(PAX_XATTR + key, value));

  const main = ustarBlock({
    name: shortName,
    prefix,
    typeflag: TYPEFLAG[h.type],
    mode: h.mode & 0o7777,
    uid: h.uid,
    gid: h.gid,
    size,
    mtime: seconds,
    linkname,
    uname,
    gname,
    devmajor: h.devmajor ?? 0,
    devminor: h.devminor ?? 0,
  });
  if (records.length === 0) return main;
  const pax = Buffer.concat(records);
  const paxHeader = ustarBlock({
    name: asciiFallback(`PaxHeaders/${name.replace(/\/$/, '').split('/').pop() ?? ''}`, 100),
    prefix: '',
    typeflag: 'x',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: pax.length,
    mtime: Math.max(0, Math.min(seconds, 0o77777777777)),
    linkname: '',
    uname: '',
    gname: '',
    devmajor: 0,
    devminor: 0,
  });
  return Buffer.concat([paxHeader, pax, Buffer.alloc(padding(pax.length)), main]);
}

/** A best-effort ASCII stand-in for readers that ignore pax; pax carries the real value. */
function asciiFallback(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[^\x01-\x7f]/g, '_').slice(0, max);
}

/** Serialises entries as a tar stream; bodies are piped through with backpressure, never buffered. */
export function writeTar(entries: AsyncIterable<TarEntry>, opts: { signal?: AbortSignal } = {}): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    for await (const { header, body } of entries) {
      throwIfAborted(opts.signal);
      yield encodeHeader(header);
      if (header.type !== 'file') {
        body?.resume();
        continue;
      }
      let written = 0;
      if (body) {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          written += chunk.length;
          if (written > header.size) throw sizeMismatch(header, written);
          yield chunk;
        }
      }
      if (written !== header.size) throw sizeMismatch(header, written);
      const pad = padding(header.size);
      if (pad) yield Buffer.alloc(pad);
    }
    yield ZERO_BLOCKS;
  }
  return Readable.from(generate(), { objectMode: false, highWaterMark: 64 * 1024 });
}

function sizeMismatch(h: TarHeader, written: number): BhattiError {
  return new BhattiError('INTERNAL', `content of "${h.name}" has ${written}+ bytes, its header says ${h.size}`, { kind: 'internal' });
}
