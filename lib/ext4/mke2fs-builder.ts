/**
 * ext4 builder on e2fsprogs: GNU tar extracts the merged root filesystem into a private temp
 * dir (keeping owners, modes, xattrs, hardlinks, device nodes), then `mke2fs -d` copies that
 * tree into a new filesystem sized from what was extracted. The temp dir is always removed.
 */
import { chmod, mkdir, mkdtemp, open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { AbortedError, BhattiError, DiskFullError, ToolError, throwIfAborted, toBhattiError, CorruptImageError } from '../errors.js';
import { writeTar } from '../layers/tar-writer.js';
import type { TarEntry } from '../layers/types.js';
import { ContentStats } from './content-stats.js';
import { lastLine, runTool } from '../util/run-tool.js';
import { sha256File } from '../util/fs.js';
import type { Ext4BuildOptions, Ext4BuildResult, Ext4Builder } from './types.js';

const DEFAULT_HEADROOM = 0.25;
const DEFAULT_MIN_SIZE = 64 * 1024 * 1024;
/** mke2fs messages that mean our size estimate was too small (not that the host disk is full). */
const FS_TOO_SMALL = /Could not allocate (block|inode)|No free space in the filesystem|Could not allocate/i;

export interface Mke2fsBuilderOptions {
  /** Paths or names of the tools (default: found on PATH). */
  tar?: string;
  mke2fs?: string;
  debugfs?: string;
}

export class Mke2fsBuilder implements Ext4Builder {
  readonly name = 'mke2fs';
  private readonly tar: string;
  private readonly mke2fs: string;
  private readonly debugfs: string;

  constructor(opts: Mke2fsBuilderOptions = {}) {
    this.tar = opts.tar ?? 'tar';
    this.mke2fs = opts.mke2fs ?? 'mke2fs';
    this.debugfs = opts.debugfs ?? 'debugfs';
  }

  async build(entries: AsyncIterable<TarEntry>, outPath: string, opts: Ext4BuildOptions): Promise<Ext4BuildResult> {
    const { signal } = opts;
    throwIfAborted(signal);
    const headroom = opts.headroom ?? DEFAULT_HEADROOM;
    const minSize = opts.minSize ?? DEFAULT_MIN_SIZE;
    const label = opts.label ?? '';
    if (Buffer.byteLength(label) > 16) throw new ToolError('mke2fs', `label "${label}" is longer than 16 bytes`, { kind: 'user' });

    // mkdtemp makes the dir 0700, so nothing else on the host can reach into the tree while it exists.
    const work = await mkdtemp(join(opts.tmpDir, 'mke2fs-'));
    try {
      const root = join(work, 'root');
      await mkdir(root, { mode: 0o755 });
      await chmod(root, 0o755); // an image without a `./` entry gets a conventional root
      const stats = new ContentStats();
      await this.extract(observe(entries, stats), root, opts);
      throwIfAborted(signal);

      const rootOwner = `${stats.root?.uid ?? 0}:${stats.root?.gid ?? 0}`;
      let size = 0;
      for (let attempt = 1; ; attempt++) {
        const grow = attempt === 1 ? 1 : attempt * 1.5;
        size = stats.fsSize(headroom, minSize, grow);
        try {
          await this.makeFs(root, outPath, size, stats.inodeCount(headroom) * Math.ceil(grow), label, rootOwner, signal);
          break;
        } catch (err) {
          if (attempt >= 3 || !(err instanceof ToolError) || !FS_TOO_SMALL.test(err.message)) throw err;
        }
      }
      const rootMode = stats.root ? stats.root.mode & 0o7777 : 0o755;
      if (rootMode !== 0o755) await this.setRootMode(outPath, rootMode, signal);
      await syncFile(outPath);
      const digest = await sha256File(outPath, signal);
      return { size: (await stat(outPath)).size, digest, contentBytes: stats.contentBytes, entries: stats.entries };
    } catch (err) {
      if (signal?.aborted) throw new AbortedError();
      throw toBhattiError(err, 'building the ext4 image');
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** Streams the entries as a tar into GNU tar; GNU tar, not our code, creates the host files. */
  private async extract(entries: AsyncIterable<TarEntry>, root: string, opts: Ext4BuildOptions): Promise<void> {
    const args = [
      '-x',
      '-f',
      '-',
      '-C',
      root,
      '--numeric-owner',
      '--same-owner',
      '--same-permissions',
      '--xattrs',
      '--xattrs-include=*',
      '--delay-directory-restore',
    ];
    const tar = runTool(this.tar, args, {
      signal: opts.signal,
      stdin: 'pipe',
      pkg: 'tar',
      failure: (code, stderr) => (/No space left on device/i.test(stderr) ? new DiskFullError(opts.tmpDir) : tarFailure(code, stderr)),
    });
    let feedError: unknown;
    try {
      await pipeline(writeTar(entries, { signal: opts.signal }), tar.child.stdin!);
    } catch (err) {
      feedError = err;
      tar.child.kill('SIGKILL');
    }
    let tarError: unknown;
    await tar.done.catch((err: unknown) => {
      tarError = err;
    });
    if (opts.signal?.aborted) throw new AbortedError();
    // Errors from the layers (unsafe entry, corrupt layer) explain more than tar's "unexpected EOF".
    if (feedError instanceof BhattiError) throw feedError;
    if (tarError) throw tarError;
    if (feedError) throw feedError;
  }

  private async makeFs(
    root: string,
    outPath: string,
    size: number,
    inodes: number,
    label: string,
    rootOwner: string,
    signal?: AbortSignal,
  ): Promise<void> {
    // A fresh sparse file of the exact size; mke2fs then writes only metadata and content.
    const fh = await open(outPath, 'w', 0o644);
    try {
      await fh.truncate(size);
    } finally {
      await fh.close();
    }
    const args = ['-q', '-F', '-t', 'ext4', '-b', '4096', '-I', '256', '-N', String(inodes), '-m', '0'];
    if (label) args.push('-L', label);
    args.push('-E', `root_owner=${rootOwner}`, '-d', root, outPath, `${size / 1024}k`);
    const run = runTool(this.mke2fs, args, {
      signal,
      pkg: 'e2fsprogs',
      failure: (code, stderr) =>
        /No space left on device/i.test(stderr) && !FS_TOO_SMALL.test(stderr)
          ? new DiskFullError(outPath)
          : new ToolError('mke2fs', `mke2fs failed (exit ${code}) for a ${size}-byte image: ${lastLine(stderr)}`),
    });
    await run.done;
  }

  /** mke2fs -d gives the root directory mode 0755 whatever the source; set the image's own. */
  private async setRootMode(outPath: string, mode: number, signal?: AbortSignal): Promise<void> {
    const run = runTool(this.debugfs, ['-w', '-R', `set_inode_field / mode 0${(0o40000 | mode).toString(8)}`, outPath], {
      signal,
      pkg: 'e2fsprogs',
      failure: (code, stderr) => new ToolError('debugfs', `debugfs could not set the root mode (exit ${code}): ${lastLine(stderr)}`),
    });
    const { stderr } = await run.done;
    // debugfs reports failures on stderr with exit status 0; its only normal output there is the version banner.
    const problem = stderr.split('\n').find((l) => l.trim() && !l.startsWith('debugfs '));
    if (problem) throw new ToolError('debugfs', `debugfs could not set the root mode: ${problem.trim()}`);
  }
}

/** tar lines that summarise or warn rather than say what went wrong. */
const TAR_NOISE = /Exiting with failure status|Error is not recoverable|Ignoring unknown extended header keyword|time stamp .* in the future|implausibly old time stamp/;
/** tar failures that point at the host (we run as root in a private dir), not at the image. */
const TAR_HOST_TROUBLE = /Operation not permitted|Permission denied|Read-only file system|Too many open files|Cannot allocate memory|Input\/output error/;

/**
 * The first line of tar's stderr that names the problem, rather than its closing summary.
 * What tar refuses to extract (a file over a non-empty directory, a path through a file) is
 * the image's doing, so that is a user error; names are escaped to keep the message one line.
 */
export function tarFailure(code: number | null, stderr: string): BhattiError {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const first = lines.find((l) => !TAR_NOISE.test(l));
  if (first === undefined || TAR_HOST_TROUBLE.test(first)) {
    return new ToolError('tar', `tar failed to extract the image (exit ${code}): ${escapeControls(first ?? lastLine(stderr))}`);
  }
  return new CorruptImageError(`the image's merged filesystem cannot be extracted: ${escapeControls(first.replace(/^tar: /, ''))}`);
}

/** Control characters as \uXXXX; tar already quotes names its own way, so backslashes stay as they are. */
function escapeControls(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Counts entries and content as they stream past. */
async function* observe(entries: AsyncIterable<TarEntry>, stats: ContentStats): AsyncGenerator<TarEntry> {
  for await (const entry of entries) {
    stats.add(entry.header);
    yield entry;
  }
}

async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

