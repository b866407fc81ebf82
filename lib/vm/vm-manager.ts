import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  InvalidArgumentError,
  SandboxExistsError,
  SandboxNotFoundError,
  SandboxStateError,
  VolumeInUseError,
  throwIfAborted,
  toBhattiError,
} from '../errors.js';
import type { ImageInfo } from '../images/image-info.js';
import type { ImageStore } from '../images/image-store.js';
import { parsePlatform } from '../oci/platform.js';
import type { DataPaths } from '../storage/data-dir.js';
import type { MetadataStore, SandboxRecord, SandboxVolumeRecord } from '../storage/metadata-store.js';
import type { TempArea } from '../storage/temp-area.js';
import { UUID_NAME, removeQuietly } from '../util/fs.js';
import { processStartTime } from '../util/host-process.js';
import type { Engine, ExecRequest, ExecResult, RunningInfo, SandboxSpec } from './engine.js';
import { validateMountPath, validateName, type VolumeMountSpec } from './names.js';
import { toSandboxInfo, type SandboxInfo } from './sandbox-info.js';
import { Sandbox } from './sandbox.js';
import type { VolumeStore } from './volume-store.js';

export interface CreateSandboxOptions {
  user: string;
  /** Image name, resolved for `user` (own, then system images). */
  image: string;
  /** Virtual CPUs (default 1). */
  cpus?: number;
  /** Memory in MiB (default 512). */
  memoryMiB?: number;
  volumes?: VolumeMountSpec[];
  /** Boot timeout (default 90 s). */
  bootTimeoutMs?: number;
  signal?: AbortSignal;
}

/** Exec options; `user` is the caller (who owns the sandbox), `runAs` the user inside the guest. */
export type ExecOptions = Omit<ExecRequest, 'argv' | 'user'> & { user: string; runAs?: string };

/** `creating` rows older than this whose process is gone are leftovers of a crash. */
const CREATING_GRACE_MS = 5 * 60_000;

/**
 * Sandboxes: rows in the metadata store, each a VM run by an `Engine` as a detached process,
 * so any later process (another CLI call) can reach it. Ownership is checked here.
 */
export class VmManager {
  constructor(
    private readonly o: {
      paths: DataPaths;
      metadata: MetadataStore;
      images: ImageStore;
      volumes: VolumeStore;
      engine: Engine;
      temp: TempArea;
    },
  ) {}

  /** Marks sandboxes whose process died (host restart, kill) as stopped and removes crash leftovers. */
  async init(): Promise<void> {
    await mkdir(this.o.paths.sandboxes, { recursive: true, mode: 0o700 });
    const rows = await this.o.metadata.listSandboxes();
    const known = new Set(rows.map((r) => r.id));
    for (const r of rows) {
      if (r.state === 'running' && !this.#alive(r)) {
        await this.o.metadata.updateSandbox(r.id, { state: 'stopped', runtime: null });
      } else if (r.state === 'creating' && !this.#workerAlive(r)) {
        // The create was killed mid-way: remove its half-made VM (the pidfile finds an orphaned QEMU).
        await this.o.engine.destroy(await this.#spec(r), undefined).catch(() => undefined);
        await this.o.metadata.deleteSandbox(r.id);
        known.delete(r.id);
      } else if (r.state === 'starting' && !this.#workerAlive(r)) {
        await this.o.engine.stop(await this.#spec(r), undefined).catch(() => undefined);
        await this.o.metadata.transitionSandbox(r.id, 'starting', 'stopped', null);
      }
    }
    // Sandbox dirs without a row: a create that crashed before its row was written.
    for (const name of await readdir(this.o.paths.sandboxes)) {
      if (UUID_NAME.test(name) && !known.has(name)) await removeQuietly(join(this.o.paths.sandboxes, name));
    }
  }

  /** Who is creating or starting the sandbox, so a crashed worker's row can be recognised at once. */
  #worker(): Record<string, unknown> {
    return { workerPid: process.pid, workerStartTime: processStartTime(process.pid) };
  }

  #workerAlive(r: SandboxRecord): boolean {
    const rt = r.runtime as { workerPid?: number; workerStartTime?: string } | null;
    if (!rt?.workerPid) return Date.now() - r.createdAt.getTime() < CREATING_GRACE_MS;
    return processStartTime(rt.workerPid) === rt.workerStartTime;
  }

  #alive(r: SandboxRecord): boolean {
    return r.state === 'running' && r.runtime !== null && this.o.engine.isRunning(r.runtime as unknown as RunningInfo);
  }

  async #spec(r: SandboxRecord): Promise<SandboxSpec> {
    const volumes = [];
    for (const v of r.volumes) {
      const vol = await this.o.metadata.getVolumeById(v.volumeId);
      if (vol) volumes.push({ file: join(this.o.paths.root, vol.file), mountPath: v.mountPath, readOnly: v.readOnly });
    }
    return {
      id: r.id,
      name: r.name,
      dir: join(this.o.paths.sandboxes, r.id),
      image: join(this.o.paths.root, r.imageFile),
      cpus: r.cpus,
      memoryMiB: r.memoryMiB,
      volumes,
      env: r.config.env,
      workingDir: r.config.workingDir || '/',
      user: r.config.user || 'root',
    };
  }

  async #record(name: string, user: string): Promise<SandboxRecord> {
    const r = await this.o.metadata.getSandbox(user, name);
    if (!r) throw new SandboxNotFoundError(name);
    return this.#reconcile(r);
  }

  /** A process that died behind our back is reported (and recorded) as stopped, not as running. */
  async #reconcile(r: SandboxRecord): Promise<SandboxRecord> {
    if (r.state === 'running' && !this.#alive(r)) {
      await this.o.metadata.updateSandbox(r.id, { state: 'stopped', runtime: null });
      return { ...r, state: 'stopped', runtime: null };
    }
    return r;
  }

  async #info(r: SandboxRecord): Promise<SandboxInfo> {
    const names = new Map<string, string>();
    for (const v of r.volumes) {
      const vol = await this.o.metadata.getVolumeById(v.volumeId);
      if (vol) names.set(v.volumeId, vol.name);
    }
    return toSandboxInfo(r, names);
  }

  /** Creates a sandbox from an image and boots it. On any failure nothing is left: no process, no clone, no row. */
  async create(name: string, opts: CreateSandboxOptions): Promise<SandboxInfo> {
    validateName('sandbox', name);
    const cpus = opts.cpus ?? 1;
    const memoryMiB = opts.memoryMiB ?? 512;
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > availableParallelism()) {
      throw new InvalidArgumentError(`invalid --cpus ${cpus}: this host has ${availableParallelism()} CPU(s)`);
    }
    if (!Number.isInteger(memoryMiB) || memoryMiB < 64) throw new InvalidArgumentError(`invalid --memory ${memoryMiB}: at least 64 MiB`);
    const image: ImageInfo = await this.o.images.inspect(opts.image, { user: opts.user, signal: opts.signal });
    const imageFile = await this.o.images.imageFileOf(image.id);
    const mounts: SandboxVolumeRecord[] = [];
    const seen = new Set<string>();
    for (const v of opts.volumes ?? []) {
      const mountPath = validateMountPath(v.mountPath);
      if (seen.has(mountPath)) throw new InvalidArgumentError(`mount path "${mountPath}" is used twice`);
      seen.add(mountPath);
      const vol = await this.o.volumes.record(v.volume, opts.user);
      if (mounts.some((m) => m.volumeId === vol.id)) throw new InvalidArgumentError(`volume "${v.volume}" is attached twice`);
      // One writer at a time: two VMs writing one ext4 file would corrupt it.
      const users = await this.o.metadata.sandboxesUsingVolume(vol.id);
      const writer = users.find((u) => !u.readOnly);
      if (writer || (!v.readOnly && users.length > 0)) {
        throw new VolumeInUseError(v.volume, `volume "${v.volume}" is already attached to sandbox ${(writer ?? users[0])!.name}${writer ? ' read-write' : ''}`);
      }
      mounts.push({ volumeId: vol.id, mountPath, readOnly: v.readOnly });
    }
    const record: SandboxRecord = {
      id: randomUUID(),
      name,
      owner: opts.user,
      imageId: image.id,
      imageName: image.name,
      imageFile,
      engine: this.o.engine.name,
      state: 'creating',
      cpus,
      memoryMiB,
      config: image.config,
      runtime: this.#worker(),
      volumes: mounts,
      createdAt: new Date(),
    };
    // The row reserves the name before any work, so two creates of one name cannot both boot.
    const inserted = await this.o.metadata.insertSandbox(record);
    if (!inserted.ok) {
      if (inserted.reason === 'name-taken') throw new SandboxExistsError(name);
      const vol = opts.volumes!.find((_, i) => mounts[i]!.volumeId === inserted.volumeId)!;
      throw new VolumeInUseError(vol.volume, `volume "${vol.volume}" is already attached to another sandbox`);
    }
    const spec = await this.#spec(record);
    let info: RunningInfo | undefined;
    try {
      await this.o.engine.create(spec, { signal: opts.signal });
      info = await this.o.engine.start(spec, { signal: opts.signal, bootTimeoutMs: opts.bootTimeoutMs });
      await this.o.metadata.updateSandbox(record.id, { state: 'running', runtime: info as unknown as Record<string, unknown> });
      return this.#info({ ...record, state: 'running', runtime: info as unknown as Record<string, unknown> });
    } catch (err) {
      await this.o.engine.destroy(spec, info).catch(() => undefined);
      await this.o.metadata.deleteSandbox(record.id);
      throw toBhattiError(err, `creating sandbox "${name}"`);
    }
  }

  /** Creates and boots a sandbox and returns a handle on it (`await using` destroys it at scope end). */
  async launch(name: string, opts: CreateSandboxOptions): Promise<Sandbox> {
    await this.create(name, opts);
    return new Sandbox(this, name, opts.user);
  }

  /** A handle on an existing sandbox of the caller's. */
  async get(name: string, opts: { user: string }): Promise<Sandbox> {
    await this.#record(name, opts.user);
    return new Sandbox(this, name, opts.user);
  }

  async list(opts: { user: string; signal?: AbortSignal }): Promise<SandboxInfo[]> {
    throwIfAborted(opts.signal);
    const out: SandboxInfo[] = [];
    for (const r of await this.o.metadata.listSandboxes([opts.user])) out.push(await this.#info(await this.#reconcile(r)));
    return out;
  }

  async inspect(name: string, opts: { user: string; signal?: AbortSignal }): Promise<SandboxInfo> {
    throwIfAborted(opts.signal);
    return this.#info(await this.#record(name, opts.user));
  }

  /** Runs a command in a running sandbox; resolves with its exit code (a non-zero code is not an error). */
  async exec(name: string, argv: string[], opts: ExecOptions): Promise<ExecResult> {
    if (argv.length === 0 || argv[0] === '') throw new InvalidArgumentError('nothing to run: give a command after the sandbox name');
    const r = await this.#record(name, opts.user);
    if (r.state !== 'running') {
      throw new SandboxStateError(name, `sandbox "${name}" is ${r.state}; start it with: bhatti start ${name}`);
    }
    const { user: _caller, runAs, ...req } = opts;
    try {
      return await this.o.engine.exec(await this.#spec(r), r.runtime as unknown as RunningInfo, { ...req, user: runAs, argv });
    } catch (err) {
      // The VM died under the command: record the truth so list/inspect do not claim it runs.
      if (!this.#alive(r)) await this.o.metadata.updateSandbox(r.id, { state: 'stopped', runtime: null });
      throw err;
    }
  }

  /** Shuts the guest down cleanly (forcibly after `timeoutMs`); its root filesystem changes are kept. */
  async stop(name: string, opts: { user: string; timeoutMs?: number; signal?: AbortSignal }): Promise<SandboxInfo> {
    const r = await this.#record(name, opts.user);
    if (r.state === 'stopped') return this.#info(r);
    if (r.state === 'creating' || r.state === 'starting') throw new SandboxStateError(name, `sandbox "${name}" is still being ${r.state === 'creating' ? 'created' : 'started'}`);
    await this.o.engine.stop(await this.#spec(r), r.runtime as unknown as RunningInfo, { signal: opts.signal, timeoutMs: opts.timeoutMs });
    await this.o.metadata.updateSandbox(r.id, { state: 'stopped', runtime: null });
    return this.#info({ ...r, state: 'stopped', runtime: null });
  }

  /** Boots a stopped sandbox again. Of two concurrent starts, one boots and the other says so. */
  async start(name: string, opts: { user: string; bootTimeoutMs?: number; signal?: AbortSignal }): Promise<SandboxInfo> {
    const r = await this.#record(name, opts.user);
    if (r.state === 'running') return this.#info(r);
    if (r.state !== 'stopped' || !(await this.o.metadata.transitionSandbox(r.id, 'stopped', 'starting', this.#worker()))) {
      const now = await this.#record(name, opts.user);
      if (now.state === 'running') return this.#info(now);
      throw new SandboxStateError(name, `sandbox "${name}" is being ${now.state === 'creating' ? 'created' : 'started'} by another command`);
    }
    try {
      const info = await this.o.engine.start(await this.#spec(r), { signal: opts.signal, bootTimeoutMs: opts.bootTimeoutMs });
      const runtime = info as unknown as Record<string, unknown>;
      await this.o.metadata.updateSandbox(r.id, { state: 'running', runtime });
      return this.#info({ ...r, state: 'running', runtime });
    } catch (err) {
      await this.o.metadata.transitionSandbox(r.id, 'starting', 'stopped', null);
      throw err;
    }
  }

  /** Stops the VM if needed and removes its clone and its row. Volumes survive. */
  async destroy(name: string, opts: { user: string; signal?: AbortSignal }): Promise<void> {
    throwIfAborted(opts.signal);
    const r = await this.#record(name, opts.user);
    await this.o.engine.destroy(await this.#spec(r), (r.runtime as unknown as RunningInfo) ?? undefined);
    await this.o.metadata.deleteSandbox(r.id);
  }

  /**
   * Saves the sandbox's root filesystem (not its volumes) as a new image of the caller's.
   * A running sandbox is copied consistently without being stopped.
   */
  async saveImage(
    sandbox: string,
    opts: { user: string; name: string; force?: boolean; signal?: AbortSignal },
  ): Promise<ImageInfo> {
    const r = await this.#record(sandbox, opts.user);
    if (r.state === 'creating' || r.state === 'starting') throw new SandboxStateError(sandbox, `sandbox "${sandbox}" is still being ${r.state === 'creating' ? 'created' : 'started'}`);
    // Fail on a bad or taken name before copying gigabytes.
    await this.o.images.checkNameFree(opts.name, { user: opts.user, force: opts.force });
    const base = await this.o.images.inspectById(r.imageId);
    const work = await this.o.temp.create();
    try {
      const out = join(work, 'rootfs.ext4');
      await this.o.engine.saveRootfs(await this.#spec(r), r.state === 'running' ? (r.runtime as unknown as RunningInfo) : undefined, out, {
        signal: opts.signal,
      });
      return await this.o.images.addImageFile(out, {
        user: opts.user,
        name: opts.name,
        source: `sandbox:${sandbox}`,
        origin: 'save',
        config: r.config,
        platform: base ? parsePlatform(base.platform) : parsePlatform('linux/amd64'),
        force: opts.force,
        signal: opts.signal,
      });
    } finally {
      await removeQuietly(work);
    }
  }
}
