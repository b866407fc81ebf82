/**
 * Oracle helpers over real e2fsprogs: `e2fsck -fn` judges an image, `debugfs` reads it back.
 * debugfs reports most errors on stderr with exit status 0, so every call checks stderr too.
 * Paths are passed double-quoted (debugfs's parser handles spaces and UTF-8 that way); a path
 * debugfs cannot quote (it contains `"`, `\` or a newline) is resolved by walking `ls -p` listings.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ExpectedEntry } from './fixtures.js';

const execFileP = promisify(execFile);

export type E2Type = 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';

export interface E2Stat {
  ino: number;
  type: E2Type;
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  links: number;
  /** Seconds since the epoch (low 32 bits plus the extra epoch bits when present). */
  mtime: number;
  /** Symlinks only: the target, whether stored in the inode or in a block. */
  target?: string;
  /** Devices only. */
  major?: number;
  minor?: number;
  /** The raw `stat` text, for assertions this parser does not cover. */
  raw: string;
}

export class DebugfsError extends Error {
  constructor(
    message: string,
    readonly notFound = false,
  ) {
    super(message);
    this.name = 'DebugfsError';
  }
}

const TYPES: Record<string, E2Type> = {
  regular: 'file',
  directory: 'dir',
  symlink: 'symlink',
  FIFO: 'fifo',
  'character special': 'char',
  'block special': 'block',
  socket: 'socket',
};

/** Runs one debugfs request read-only; throws on anything it printed to stderr but its banner. */
async function debugfs(image: string, request: string): Promise<Buffer> {
  let res: { stdout: Buffer; stderr: Buffer };
  try {
    res = await execFileP('debugfs', ['-R', request, image], { encoding: 'buffer', maxBuffer: 1 << 30 });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new DebugfsError(`debugfs -R '${request}' ${image}: ${e.stderr?.toString().trim() || e.message}`);
  }
  const errors = res.stderr
    .toString('utf8')
    .split('\n')
    .filter((l) => l.trim() && !/^debugfs \d/.test(l));
  if (errors.length) {
    const msg = errors.join('; ');
    throw new DebugfsError(`debugfs -R '${request}': ${msg}`, /File not found by ext2_lookup|Ext2 inode is not a directory/.test(msg));
  }
  return res.stdout;
}

interface LsEntry {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  name: string;
}

/** `ls -p` prints `/ino/mode/uid/gid/name/size/` per entry; names cannot contain `/`. */
async function lsRaw(image: string, dirSpec: string): Promise<LsEntry[]> {
  return parseLs((await debugfs(image, `ls -p ${dirSpec}`)).toString('utf8'));
}

function parseLs(out: string): LsEntry[] {
  const entries: LsEntry[] = [];
  for (const line of out.split('\n')) {
    if (!line.startsWith('/')) continue;
    const f = line.split('/');
    // ['', ino, mode, uid, gid, name, size, '']
    if (f.length < 8) continue;
    entries.push({ ino: Number(f[1]), mode: parseInt(f[2]!, 8), uid: Number(f[3]), gid: Number(f[4]), name: f.slice(5, -2).join('/') });
  }
  return entries;
}

/** debugfs's line parser knows double quotes but no escapes. */
const quotable = (p: string) => !/["\\\n\r]/.test(p);

/** A debugfs file spec for `path`: `"path"` when quotable, else `<ino>` found by walking. */
async function spec(image: string, path: string): Promise<string> {
  if (!path.startsWith('/')) path = '/' + path;
  if (quotable(path)) return `"${path}"`;
  let ino = 2; // root
  for (const part of path.split('/').filter(Boolean)) {
    const hit = (await lsRaw(image, `<${ino}>`)).find((e) => e.name === part);
    if (!hit) throw new DebugfsError(`${path}: File not found by ext2_lookup`, true);
    ino = hit.ino;
  }
  return `<${ino}>`;
}

function field(raw: string, re: RegExp, what: string): string {
  const m = raw.match(re);
  if (!m) throw new DebugfsError(`cannot parse ${what} from debugfs stat output:\n${raw}`);
  return m[1]!;
}

function parseStat(raw: string, path: string): E2Stat {
  const typeName = field(raw, /Type:\s+(.+?)\s+Mode:/, 'type');
  const type = TYPES[typeName];
  if (!type) throw new DebugfsError(`unknown inode type ${JSON.stringify(typeName)} for ${path}`);
  const mtimeHex = raw.match(/\bmtime: 0x([0-9a-f]+):([0-9a-f]+)/);
  let mtime = mtimeHex ? parseInt(mtimeHex[1]!, 16) : 0;
  // Extra field: low 2 bits extend the epoch beyond 2038.
  if (mtimeHex) mtime += (parseInt(mtimeHex[2]!, 16) & 3) * 2 ** 32;
  const st: E2Stat = {
    ino: Number(field(raw, /Inode:\s+(\d+)/, 'inode')),
    type,
    mode: parseInt(field(raw, /Mode:\s+(\d+)/, 'mode'), 8),
    uid: Number(field(raw, /User:\s+(\d+)/, 'uid')),
    gid: Number(field(raw, /Group:\s+(\d+)/, 'gid')),
    size: Number(field(raw, /Size:\s+(\d+)/, 'size')),
    links: Number(field(raw, /Links:\s+(\d+)/, 'links')),
    mtime,
    raw,
  };
  const fast = raw.match(/^Fast link dest: "(.*)"$/m);
  if (type === 'symlink' && fast) st.target = fast[1]!;
  if (type === 'char' || type === 'block') {
    const m = raw.match(/Device major\/minor number: (\d+):(\d+)/);
    if (m) {
      st.major = Number(m[1]);
      st.minor = Number(m[2]);
    }
  }
  return st;
}

/** `debugfs stat`, parsed. Throws DebugfsError (notFound = true) when the path does not exist. */
export async function stat(image: string, path: string): Promise<E2Stat> {
  const s = await spec(image, path);
  const st = parseStat((await debugfs(image, `stat ${s}`)).toString('utf8'), path);
  // A target too long for the inode sits in a data block; `cat` of the inode reads it.
  if (st.type === 'symlink' && st.target === undefined) {
    st.target = (await debugfs(image, `cat <${st.ino}>`)).subarray(0, st.size).toString('utf8');
  }
  return st;
}

/** True when `path` exists (symlinks are not followed). */
export async function exists(image: string, path: string): Promise<boolean> {
  try {
    await stat(image, path);
    return true;
  } catch (err) {
    if (err instanceof DebugfsError && err.notFound) return false;
    throw err;
  }
}

/** File content, byte-exact (debugfs writes the data to stdout, its banner to stderr). */
export async function cat(image: string, path: string): Promise<Buffer> {
  const st = await stat(image, path);
  if (st.type !== 'file') throw new DebugfsError(`${path} is a ${st.type}, not a regular file`);
  const out = await debugfs(image, `cat <${st.ino}>`);
  if (out.length !== st.size) throw new DebugfsError(`${path}: read ${out.length} bytes, inode says ${st.size}`);
  return out;
}

/** Symlink target. */
export async function readlink(image: string, path: string): Promise<string> {
  const st = await stat(image, path);
  if (st.type !== 'symlink') throw new DebugfsError(`${path} is a ${st.type}, not a symlink`);
  return st.target!;
}

/** Names in a directory, without `.` and `..`, sorted. */
export async function ls(image: string, dir: string): Promise<string[]> {
  const entries = await lsRaw(image, await spec(image, dir));
  return entries
    .map((e) => e.name)
    .filter((n) => n !== '.' && n !== '..')
    .sort();
}

/**
 * Extended attributes of `path`. debugfs prints text values quoted and binary ones as hex bytes;
 * both come back as Buffers.
 */
export async function xattrs(image: string, path: string): Promise<Record<string, Buffer>> {
  return parseEaList((await debugfs(image, `ea_list ${await spec(image, path)}`)).toString('utf8'));
}

function parseEaList(out: string): Record<string, Buffer> {
  const res: Record<string, Buffer> = {};
  for (const line of out.split('\n')) {
    // `  user.k (2) = "v1"` or `  user.b (4) = 00 01 02 ff `
    const m = line.match(/^\s+(\S+) \((\d+)\)(?: = (.*))?$/);
    if (!m) continue;
    const len = Number(m[2]);
    const v = (m[3] ?? '').trimEnd();
    if (v.startsWith('"')) res[m[1]!] = Buffer.from(unescapeDebugfs(v.slice(1, -1)), 'latin1').subarray(0, len);
    else res[m[1]!] = Buffer.from(v.split(/\s+/).filter(Boolean).map((h) => parseInt(h, 16)));
  }
  return res;
}

/** debugfs escapes non-printable bytes in quoted values as octal `\ooo`. */
function unescapeDebugfs(s: string): string {
  // Keep UTF-8 bytes intact: reinterpret the printed text as bytes, then decode escapes.
  const bytes = Buffer.from(s, 'utf8').toString('latin1');
  return bytes.replace(/\\([0-7]{3}|\\|")/g, (_, x: string) => (x.length === 3 ? String.fromCharCode(parseInt(x, 8)) : x));
}

/** `e2fsck -fn`: a forced, read-only check. ok means exit status 0 (no problems found). */
export async function fsck(image: string): Promise<{ ok: boolean; code: number; output: string }> {
  try {
    const { stdout, stderr } = await execFileP('e2fsck', ['-fn', image]);
    return { ok: true, code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string; message: string };
    if (typeof e.code !== 'number') throw err;
    return { ok: false, code: e.code, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/**
 * Runs many read-only requests in one debugfs process (`-f`), which is what makes whole-tree
 * checks fast: opening the image dominates a single request. debugfs echoes each request as
 * `debugfs: REQ` on stdout, so the text up to the next echo is that request's output; a failed
 * request leaves an empty section (its message goes to stderr). Outputs must be text ending in
 * a newline (stat, ls, ea_list), not raw file data: use `dump` to files for that.
 */
async function batch(image: string, requests: string[]): Promise<string[]> {
  if (requests.length === 0) return [];
  const dir = await mkdtemp(join(tmpdir(), 'bhatti-debugfs-'));
  try {
    const file = join(dir, 'cmds');
    await writeFile(file, requests.join('\n') + '\n');
    const { stdout } = await execFileP('debugfs', ['-f', file, image], { maxBuffer: 1 << 30 });
    const out: string[] = [];
    let cur: string[] | undefined;
    let next = 0;
    for (const line of stdout.split('\n')) {
      if (next < requests.length && line === `debugfs: ${requests[next]}`) {
        if (cur) out.push(cur.join('\n'));
        cur = [];
        next++;
      } else cur?.push(line);
    }
    if (cur) out.push(cur.join('\n'));
    if (out.length !== requests.length) throw new DebugfsError(`debugfs -f: got ${out.length} outputs for ${requests.length} requests`);
    return out;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `stat` of many paths in one run; undefined where the path does not exist. */
async function statMany(image: string, paths: string[]): Promise<(E2Stat | undefined)[]> {
  const res: (E2Stat | undefined)[] = new Array(paths.length);
  const q = paths.map((p, i) => [p, i] as const).filter(([p]) => quotable(p));
  const outs = await batch(image, q.map(([p]) => `stat "${p}"`));
  q.forEach(([p, i], k) => (res[i] = outs[k]!.trim() ? parseStat(outs[k]!, p) : undefined));
  for (let i = 0; i < paths.length; i++) {
    if (quotable(paths[i]!)) continue;
    try {
      res[i] = await stat(image, paths[i]!);
    } catch (err) {
      if (!(err instanceof DebugfsError && err.notFound)) throw err;
    }
  }
  return res;
}

/** Dumps inodes' data into files in one debugfs run; returns their contents. */
async function dumpMany(image: string, inos: number[]): Promise<Buffer[]> {
  if (inos.length === 0) return [];
  const dir = await mkdtemp(join(tmpdir(), 'bhatti-dump-'));
  try {
    await batch(image, inos.map((ino, i) => `dump <${ino}> ${join(dir, String(i))}`));
    return await Promise.all(inos.map((_, i) => readFile(join(dir, String(i)))));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Every path in the image (`/a/b`), without lost+found at the root. One debugfs run per depth level. */
export async function walk(image: string): Promise<string[]> {
  const out: string[] = [];
  let level: { ino: number; path: string }[] = [{ ino: 2, path: '' }];
  while (level.length) {
    const lists = await batch(image, level.map((d) => `ls -p <${d.ino}>`));
    const nextLevel: { ino: number; path: string }[] = [];
    level.forEach((d, i) => {
      for (const e of parseLs(lists[i]!)) {
        if (e.name === '.' || e.name === '..' || (d.path === '' && e.name === 'lost+found')) continue;
        const p = `${d.path}/${e.name}`;
        out.push(p);
        if ((e.mode & 0o170000) === 0o040000) nextLevel.push({ ino: e.ino, path: p });
      }
    });
    level = nextLevel;
  }
  return out;
}

export interface ExpectedTree {
  entries: Record<string, ExpectedEntry>;
  hardlinks?: string[][];
  absent?: string[];
}

/**
 * Compares an ext4 image with an expected tree (see test/helpers/fixtures.ts) through debugfs and
 * returns one line per difference; an empty array means they match. Checks type, mode (not for
 * symlinks), owner, link count, size and sha256 of files, symlink targets, device numbers, user.*
 * xattrs, mtimes (unless `mtime: false`), shared inodes of hardlink groups, absent paths, and
 * entries the image has beyond the expected ones (unless `extras: false`).
 */
export async function compareTree(
  image: string,
  expected: ExpectedTree,
  opts: { mtime?: boolean; xattrs?: boolean; extras?: boolean } = {},
): Promise<string[]> {
  const diffs: string[] = [];
  const paths = Object.keys(expected.entries);
  const stats = await statMany(image, paths);
  const inos = new Map<string, number>();
  const toDump: { path: string; ino: number; want: ExpectedEntry; got: E2Stat }[] = [];
  const xaPaths: string[] = [];
  paths.forEach((path, i) => {
    const want = expected.entries[path]!;
    const got = stats[i];
    if (!got) return void diffs.push(`${path}: missing`);
    inos.set(path, got.ino);
    const cmp = (what: string, a: unknown, b: unknown) => {
      if (a !== b) diffs.push(`${path}: ${what} is ${String(a)}, expected ${String(b)}`);
    };
    cmp('type', got.type, want.type);
    if (got.type !== want.type) return;
    if (want.type !== 'symlink') cmp('mode', got.mode.toString(8), want.mode.toString(8));
    cmp('uid', got.uid, want.uid);
    cmp('gid', got.gid, want.gid);
    cmp('links', got.links, want.nlink);
    if (opts.mtime !== false && want.mtime !== undefined) cmp('mtime', got.mtime, want.mtime);
    if (want.type === 'file') cmp('size', got.size, want.size);
    if (want.type === 'symlink' && got.target !== undefined) cmp('target', got.target, want.target);
    if ((want.type === 'file' && want.sha256) || (want.type === 'symlink' && got.target === undefined)) {
      toDump.push({ path, ino: got.ino, want, got });
    }
    if (want.type === 'char' || want.type === 'block') {
      cmp('major', got.major, want.major);
      cmp('minor', got.minor, want.minor);
    }
    if (opts.xattrs !== false && want.type !== 'symlink' && quotable(path)) xaPaths.push(path);
  });
  const data = await dumpMany(image, toDump.map((d) => d.ino));
  toDump.forEach(({ path, want, got }, i) => {
    const buf = data[i]!;
    if (want.type === 'file') {
      const sum = createHash('sha256').update(buf).digest('hex');
      if (sum !== want.sha256) diffs.push(`${path}: sha256 is ${sum}, expected ${want.sha256}`);
    } else {
      const target = buf.subarray(0, got.size).toString('utf8');
      if (target !== want.target) diffs.push(`${path}: target is ${target}, expected ${want.target}`);
    }
  });
  const eas = await batch(image, xaPaths.map((p) => `ea_list "${p}"`));
  xaPaths.forEach((path, i) => {
    const have = Object.fromEntries(
      Object.entries(parseEaList(eas[i]!))
        .filter(([k]) => k.startsWith('user.'))
        .map(([k, v]) => [k, v.toString('utf8')]),
    );
    const a = JSON.stringify(have);
    const b = JSON.stringify(expected.entries[path]!.xattrs ?? {});
    if (a !== b) diffs.push(`${path}: user xattrs are ${a}, expected ${b}`);
  });
  for (const group of expected.hardlinks ?? []) {
    const set = new Set(group.map((p) => inos.get(p)));
    if (set.size !== 1) diffs.push(`hardlink group ${group.join(', ')}: inodes ${[...set].join(', ')}`);
  }
  const absent = expected.absent ?? [];
  (await statMany(image, absent)).forEach((st, i) => {
    if (st) diffs.push(`${absent[i]}: exists, expected absent`);
  });
  if (opts.extras !== false) {
    for (const path of await walk(image)) if (!(path in expected.entries)) diffs.push(`${path}: unexpected entry`);
  }
  return diffs;
}
