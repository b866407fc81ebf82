import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { InvalidArgumentError, ToolError, VolumeExistsError, VolumeInUseError, VolumeNotFoundError, throwIfAborted } from '../errors.js';
import { lastLine, runTool } from '../util/run-tool.js';
import type { DataPaths } from '../storage/data-dir.js';
import type { MetadataStore, VolumeRecord } from '../storage/metadata-store.js';
import type { TempArea } from '../storage/temp-area.js';
import { STORE_FILE, publishFile, removeQuietly } from '../util/fs.js';
import { validateName } from './names.js';

/** What callers see of a volume. */
export interface VolumeInfo {
  id: string;
  name: string;
  owner: string;
  /** Size of the filesystem in bytes. */
  size: number;
  /** Sandboxes it is attached to. */
  attachedTo: string[];
  created: Date;
}

const MIN_VOLUME = 16 * 1024 * 1024;
/** The largest file most host filesystems (ext4 with 4 KiB blocks) can hold. */
const MAX_VOLUME = 16 * 1024 ** 4 - 4096;

/** Unreferenced volume files younger than this may belong to a create/clone in progress elsewhere. */
const ORPHAN_GRACE_MS = 10 * 60_000;

/** Volumes: ext4 files owned by a user, attached to sandboxes, surviving them. */
export class VolumeStore {
  constructor(
    private readonly o: { paths: DataPaths; metadata: MetadataStore; temp: TempArea },
  ) {}

  async init(): Promise<void> {
    await mkdir(this.o.paths.volumes, { recursive: true, mode: 0o700 });
    const referenced = await this.o.metadata.volumeFiles();
    for (const name of await readdir(this.o.paths.volumes)) {
      if (!STORE_FILE.test(name)) continue;
      const full = join(this.o.paths.volumes, name);
      if (referenced.has(relative(this.o.paths.root, full))) continue;
      const st = await stat(full).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > ORPHAN_GRACE_MS) await removeQuietly(full);
    }
  }

  /** @internal the record a caller means by `name` (only their own volumes). */
  async record(name: string, user: string): Promise<VolumeRecord> {
    const r = await this.o.metadata.getVolume(user, name);
    if (!r) throw new VolumeNotFoundError(name);
    return r;
  }

  path(r: VolumeRecord): string {
    return join(this.o.paths.root, r.file);
  }

  async #info(r: VolumeRecord): Promise<VolumeInfo> {
    const users = await this.o.metadata.sandboxesUsingVolume(r.id);
    return { id: r.id, name: r.name, owner: r.owner, size: r.size, attachedTo: users.map((u) => u.name), created: r.createdAt };
  }

  /** Creates an empty ext4 volume of `size` bytes (sparse: it takes disk space as it fills). */
  async create(name: string, opts: { user: string; size: number; signal?: AbortSignal }): Promise<VolumeInfo> {
    validateName('volume', name);
    if (!Number.isSafeInteger(opts.size) || opts.size < MIN_VOLUME || opts.size > MAX_VOLUME) {
      throw new InvalidArgumentError(`invalid volume size ${opts.size} bytes: it must be at least 16 MiB and less than 16 TiB`);
    }
    if (await this.o.metadata.getVolume(opts.user, name)) throw new VolumeExistsError(name);
    const work = await this.o.temp.create();
    try {
      const tmp = join(work, 'volume.ext4');
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.truncate(opts.size);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EFBIG') {
          throw new InvalidArgumentError(`invalid volume size ${opts.size} bytes: too large for the filesystem holding the data dir`);
        }
        throw err;
      } finally {
        await fh.close();
      }
      await runTool('mke2fs', ['-q', '-F', '-t', 'ext4', '-m', '0', '-L', name.slice(0, 16), tmp], {
        signal: opts.signal,
        pkg: 'e2fsprogs',
        failure: (code, stderr) => new ToolError('mke2fs', `mke2fs failed (${code}) making volume "${name}": ${lastLine(stderr)}`),
      }).done;
      return await this.#publish(tmp, { name, owner: opts.user, size: opts.size });
    } finally {
      await removeQuietly(work);
    }
  }

  async #publish(tmp: string, meta: { name: string; owner: string; size: number }): Promise<VolumeInfo> {
    const id = randomUUID();
    const finalPath = join(this.o.paths.volumes, `${id}.ext4`);
    await publishFile(tmp, finalPath);
    const record: VolumeRecord = { id, ...meta, file: relative(this.o.paths.root, finalPath), createdAt: new Date() };
    if (!(await this.o.metadata.insertVolume(record))) {
      await removeQuietly(finalPath);
      throw new VolumeExistsError(meta.name);
    }
    return this.#info(record);
  }

  async list(opts: { user: string; signal?: AbortSignal }): Promise<VolumeInfo[]> {
    throwIfAborted(opts.signal);
    return Promise.all((await this.o.metadata.listVolumes([opts.user])).map((r) => this.#info(r)));
  }

  async inspect(name: string, opts: { user: string; signal?: AbortSignal }): Promise<VolumeInfo> {
    throwIfAborted(opts.signal);
    return this.#info(await this.record(name, opts.user));
  }

  /** Deletes a volume no sandbox is attached to. */
  async delete(name: string, opts: { user: string; signal?: AbortSignal }): Promise<void> {
    throwIfAborted(opts.signal);
    const r = await this.record(name, opts.user);
    const users = await this.o.metadata.sandboxesUsingVolume(r.id);
    if (users.length > 0) {
      throw new VolumeInUseError(name, `volume "${name}" is attached to sandbox ${users.map((u) => u.name).join(', ')}; destroy ${users.length === 1 ? 'it' : 'them'} first`);
    }
    await this.o.metadata.deleteVolume(r.id);
    await removeQuietly(this.path(r));
  }

  /**
   * Copies a volume (a reflink where the filesystem can, else a sparse copy). Refused while a
   * running sandbox has it attached read-write, since the copy would not be consistent.
   */
  async clone(source: string, target: string, opts: { user: string; signal?: AbortSignal }): Promise<VolumeInfo> {
    validateName('volume', target);
    const r = await this.record(source, opts.user);
    if (await this.o.metadata.getVolume(opts.user, target)) throw new VolumeExistsError(target);
    const writers = (await this.o.metadata.sandboxesUsingVolume(r.id)).filter((u) => u.state !== 'stopped' && !u.readOnly);
    if (writers.length > 0) {
      throw new VolumeInUseError(source, `volume "${source}" is attached read-write to running sandbox ${writers.map((u) => u.name).join(', ')}; stop it first`);
    }
    const work = await this.o.temp.create();
    try {
      const tmp = join(work, 'volume.ext4');
      await runTool('cp', ['--reflink=auto', '--sparse=always', this.path(r), tmp], {
        signal: opts.signal,
        pkg: 'coreutils',
        failure: (code, stderr) => new ToolError('cp', `copying volume "${source}" failed (${code}): ${lastLine(stderr)}`),
      }).done;
      return await this.#publish(tmp, { name: target, owner: opts.user, size: r.size });
    } finally {
      await removeQuietly(work);
    }
  }
}
