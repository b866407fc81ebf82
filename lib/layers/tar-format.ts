/** Field layout and number/record encodings shared by the tar reader and writer (POSIX ustar + pax, GNU extensions). */
import type { EntryType } from './types.js';

export const BLOCK = 512;

/** Offsets and widths of ustar header fields. */
export const F = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const;

export const TYPEFLAG: Record<EntryType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  'character-device': '3',
  'block-device': '4',
  directory: '5',
  fifo: '6',
};

export const PAX_XATTR = 'SCHILY.xattr.';

/** Bytes needed to round `n` up to whole 512-byte blocks. */
export function padding(n: number): number {
  const r = n % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

/** Sum of header bytes with the checksum field counted as spaces, unsigned and signed (old tars used signed). */
export function checksums(block: Buffer): { unsigned: number; signed: number } {
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return { unsigned, signed };
}

/** Parses an octal or base-256 (GNU/star) numeric field; undefined when malformed. */
export function parseNumber(field: Buffer): number | undefined {
  if (field.length > 0 && (field[0]! & 0x80) !== 0) {
    // First byte 0x80 marks a positive number, 0xff a negative one in two's complement.
    let v = BigInt(field[0]! & 0x7f);
    for (let i = 1; i < field.length; i++) v = (v << 8n) | BigInt(field[i]!);
    if (field[0] === 0xff) v -= 1n << BigInt(8 * field.length - 1);
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : undefined;
  }
  const s = field.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) return undefined;
  const n = parseInt(s, 8);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Writes `value` as NUL-terminated octal if it fits, else base-256; returns false if neither fits. */
export function writeNumber(block: Buffer, [off, width]: readonly [number, number], value: number): boolean {
  const octal = Math.trunc(value).toString(8);
  if (value >= 0 && octal.length <= width - 1) {
    block.write(octal.padStart(width - 1, '0') + '\0', off, width, 'latin1');
    return true;
  }
  // base-256: high bit of the first byte set, big-endian two's complement in the rest.
  let v = BigInt(Math.trunc(value));
  const bits = BigInt(8 * width - 1);
  if (v >= 1n << bits || v < -(1n << bits)) return false;
  if (v < 0n) v += 1n << BigInt(8 * width);
  for (let i = width - 1; i >= 0; i--) {
    block[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  block[off] = block[off]! | 0x80;
  return true;
}

/** Reads a NUL-terminated string field as raw bytes. */
export function fieldBytes(block: Buffer, [off, width]: readonly [number, number]): Buffer {
  const f = block.subarray(off, off + width);
  const nul = f.indexOf(0);
  return nul === -1 ? f : f.subarray(0, nul);
}

/**
 * Parses pax extended header records (`LEN KEY=VALUE\n`). Values stay raw bytes: xattr values
 * are binary, and only the caller knows which keys are text.
 */
export function parsePax(data: Buffer): Map<string, Buffer> | string {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // NUL padding some writers leave at the end
    const sp = data.indexOf(0x20, pos);
    if (sp === -1 || sp - pos > 20) return `bad pax record at offset ${pos}`;
    const lenText = data.toString('latin1', pos, sp);
    if (!/^[0-9]+$/.test(lenText)) return `bad pax record length "${lenText}"`;
    const len = parseInt(lenText, 10);
    const end = pos + len;
    if (len < sp - pos + 3 || end > data.length || data[end - 1] !== 0x0a) return `bad pax record length ${len}`;
    const eq = data.indexOf(0x3d, sp + 1);
    if (eq === -1 || eq >= end) return 'pax record without "="';
    out.set(data.toString('utf8', sp + 1, eq), data.subarray(eq + 1, end - 1));
    pos = end;
  }
  return out;
}

/** Encodes one pax record; its decimal length prefix counts itself. */
export function paxRecord(key: string, value: Buffer | string): Buffer {
  const k = Buffer.from(key, 'utf8');
  const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  const base = k.length + v.length + 3; // ' ', '=', '\n'
  let len = base + 1;
  while (String(len).length + base !== len) len = base + String(len).length;
  return Buffer.concat([Buffer.from(`${len} `, 'latin1'), k, Buffer.from('=', 'latin1'), v, Buffer.from('\n', 'latin1')]);
}
