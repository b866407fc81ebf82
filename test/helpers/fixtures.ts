/**
 * Test fixture images, built once per machine by test/fixtures/build-images.sh (umoci, GNU tar,
 * skopeo, busybox-static) and cached under /tmp keyed by the script's content, so editing the
 * script rebuilds them. Concurrent ava workers share one build: a lock directory elects a builder,
 * which builds into a temp dir and renames it into place; the others wait for the rename.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const BUILD_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'build-images.sh');

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';

/** One path of a merged image filesystem, as the fixture script built it. */
export interface ExpectedEntry {
  type: EntryType;
  /** Permission bits including setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  /** Whole seconds; absent for directories (their mtimes are not pinned by the script). */
  mtime?: number;
  /** Regular files only. */
  size?: number;
  sha256?: string;
  /** Symlinks only. */
  target?: string;
  /** Character and block devices only. */
  major?: number;
  minor?: number;
  xattrs?: Record<string, string>;
}

export interface ExpectedImage {
  tag: string;
  /** Number of layer blobs in the manifest. */
  layers: number;
  architecture: string;
  /** Every path of the merged filesystem except `/`, keyed `/abs/path`. */
  entries: Record<string, ExpectedEntry>;
  /** Groups of paths that must share one inode. */
  hardlinks: string[][];
  /** Paths lower layers had that must not exist in the merged result. */
  absent: string[];
  xattrsSupported?: boolean;
  /** Named paths for the tricky cases (deepLongName, gnuLongName, opaqueDir, replacedHardlinkTarget, …). */
  special?: Record<string, string>;
}

export interface Expected {
  note: string;
  images: { multi: ExpectedImage; tiny: ExpectedImage };
  tags: string[];
  multiarch: { tag: string; platforms: { architecture: string; os: string; variant?: string; tag: string }[] };
  /** Only when built with bigMB; files maps /data/blob-N.bin to its size and sha256. */
  big: { tag: string; megabytes: number; layers: number; files: Record<string, { size: number; sha256: string }> } | null;
  dockerArchive: { file: string; name: string; of: string };
}

export interface Fixtures {
  /** Cache directory holding everything below. */
  dir: string;
  /** OCI layout directory (tags: multi, tiny, tiny-arm64, multiarch, and big when asked for). */
  layout: string;
  /** `docker save`-format tar of `multi`, named `test/multi:1`. */
  dockerArchive: string;
  expected: Expected;
}

export interface FixtureOptions {
  /** Also build the `big` tag with at least this many MB of random data over 3 layers. */
  bigMB?: number;
}

function scriptHash(): string {
  return createHash('sha256').update(readFileSync(BUILD_SCRIPT)).digest('hex').slice(0, 16);
}

/** Where the fixtures for the current script live (built or not). */
export function fixturesDir(opts: FixtureOptions = {}): string {
  const big = opts.bigMB ? `-big${opts.bigMB}` : '';
  return join(tmpdir(), `bhatti-fixtures-${scriptHash()}${big}`);
}

/** `DIR/layout:tag`, the form `TestRegistry.push` and skopeo's `oci:` transport take. */
export function layoutRef(tag: string, opts: FixtureOptions = {}): string {
  return `${join(fixturesDir(opts), 'layout')}:${tag}`;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const STALE_LOCK_MS = 10 * 60_000;

async function build(dir: string, opts: FixtureOptions): Promise<void> {
  const lock = `${dir}.lock`;
  for (;;) {
    if (existsSync(join(dir, 'expected.json'))) return;
    try {
      mkdirSync(lock);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Another worker builds; a lock older than any real build belongs to a dead process.
      try {
        if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) rmSync(lock, { recursive: true, force: true });
      } catch {
        // lock vanished meanwhile
      }
      await sleep(200);
      continue;
    }
    try {
      if (existsSync(join(dir, 'expected.json'))) return;
      const tmp = `${dir}.tmp-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      const args = [BUILD_SCRIPT, ...(opts.bigMB ? ['--big', String(opts.bigMB)] : []), tmp];
      try {
        await execFileP('bash', args, { maxBuffer: 64 << 20 });
      } catch (err) {
        rmSync(tmp, { recursive: true, force: true });
        const e = err as { stderr?: string; message: string };
        throw new Error(`build-images.sh failed: ${e.message}\n${e.stderr ?? ''}`);
      }
      rmSync(dir, { recursive: true, force: true }); // a half-made dir from an older crash
      renameSync(tmp, dir);
      return;
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
}

const memo = new Map<string, Promise<Fixtures>>();

/** Builds the fixture images once per machine (per script version) and describes them. */
export function fixtures(opts: FixtureOptions = {}): Promise<Fixtures> {
  const dir = fixturesDir(opts);
  let p = memo.get(dir);
  if (!p) {
    p = build(dir, opts).then(() => ({
      dir,
      layout: join(dir, 'layout'),
      dockerArchive: join(dir, 'multi.docker.tar'),
      expected: JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected,
    }));
    p.catch(() => memo.delete(dir));
    memo.set(dir, p);
  }
  return p;
}

/**
 * Pushes a layout tag with every platform it holds (`skopeo copy --all`): `TestRegistry.push`
 * copies only the host platform when the tag is an index, like `multiarch`.
 */
export async function pushAll(
  registry: { host: string; auth?: string },
  layoutRefStr: string,
  repoTag: string,
): Promise<void> {
  const args = ['copy', '--quiet', '--all', '--dest-tls-verify=false'];
  if (registry.auth) args.push('--dest-creds', registry.auth);
  args.push(`oci:${layoutRefStr}`, `docker://${registry.host}/${repoTag}`);
  await execFileP('skopeo', args);
}
