import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { ImageExistsError, ImageInUseError, ImageNotFoundError, InvalidArgumentError, PermissionDeniedError, throwIfAborted, toBhattiError } from '../errors.js';
import type { Ext4Builder } from '../ext4/types.js';
import { flatten } from '../layers/flatten.js';
import type { LayerInput } from '../layers/types.js';
import { formatPlatform, hostPlatform, parsePlatform } from '../oci/platform.js';
import { normaliseRuntimeConfig } from '../oci/manifest.js';
import { parseReference } from '../oci/reference.js';
import { RegistrySource } from '../oci/registry-source.js';
import type { ImageSource, Platform, ResolvedImage, RuntimeConfig } from '../oci/types.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { DataPaths } from '../storage/data-dir.js';
import type { ImageRecord, MetadataStore } from '../storage/metadata-store.js';
import type { TempArea } from '../storage/temp-area.js';
import { STORE_FILE, publishFile, removeQuietly, sha256File } from '../util/fs.js';
import { Operation } from '../util/operation.js';
import type { PullEvents, PullResult } from './events.js';
import { fetchLayers } from './fetch-layers.js';
import { toImageInfo, type ImageInfo } from './image-info.js';
import { defaultImageName, lookupCandidates, validateImageName } from './names.js';

/** Who is asking. `''` is the system (administrator) scope. */
export interface Caller {
  user: string;
}

export interface PullOptions extends Caller {
  /** Local name; defaults to `<repository>:<tag>` from the reference. */
  name?: string;
  /** `os/arch[/variant]`; defaults to the host's linux platform. */
  platform?: string;
  /** Registry credentials, `user:token` or an object. */
  auth?: string | { username: string; password: string };
  /** Allow plain HTTP to a non-loopback registry. */
  insecure?: boolean;
  /** Replace an image of the same name made from another source, or rebuild an up-to-date one. */
  force?: boolean;
  /** Layers downloaded at once (default 3). */
  concurrency?: number;
  signal?: AbortSignal;
}

export interface ImageStoreOptions {
  paths: DataPaths;
  metadata: MetadataStore;
  blobs: BlobStore;
  builder: Ext4Builder;
  temp: TempArea;
}

/** Blobs used within this window are kept by prune. */
const PRUNE_GRACE_MS = 60 * 60_000;

/** Unreferenced image files younger than this may belong to a publish in progress elsewhere. */
const ORPHAN_GRACE_MS = 10 * 60_000;

function parseAuth(auth: PullOptions['auth']): { username: string; password: string } | undefined {
  if (auth === undefined) return undefined;
  if (typeof auth !== 'string') return auth;
  const i = auth.indexOf(':');
  if (i <= 0) throw new InvalidArgumentError(`invalid credentials "${auth.replace(/:.*/, ':…')}": expected user:token`);
  return { username: auth.slice(0, i), password: auth.slice(i + 1) };
}

/**
 * Images: pull, list, inspect, delete, with per-user scoping. Ownership is checked here,
 * not in any front door, so the CLI, the server and embedders all get the same rules.
 */
export class ImageStore {
  readonly #o: ImageStoreOptions;

  constructor(opts: ImageStoreOptions) {
    this.#o = opts;
  }

  /** Creates directories and removes what crashed operations left behind. */
  async init(): Promise<void> {
    await mkdir(this.#o.paths.imageStore, { recursive: true, mode: 0o700 });
    await this.#o.temp.sweep();
    const referenced = await this.#o.metadata.imageFiles();
    for (const name of await readdir(this.#o.paths.imageStore)) {
      if (!STORE_FILE.test(name)) continue;
      const full = join(this.#o.paths.imageStore, name);
      const rel = relative(this.#o.paths.root, full);
      if (referenced.has(rel)) continue;
      const st = await stat(full).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > ORPHAN_GRACE_MS) await removeQuietly(full);
    }
  }

  /** Pulls an image from a registry and converts it to an ext4 root filesystem. */
  pull(reference: string, opts: PullOptions): Operation<PullResult, PullEvents> {
    return new Operation<PullResult, PullEvents>(async (emit) => {
      const ref = parseReference(reference);
      const name = validateImageName(opts.name ?? defaultImageName(ref.repository, ref.tag, ref.digest));
      const platform: Platform = opts.platform !== undefined ? parsePlatform(opts.platform) : hostPlatform();
      const source = new RegistrySource(reference, { auth: parseAuth(opts.auth), insecure: opts.insecure });
      emit('resolving', { reference: source.description });
      return this.#build(source, { ...opts, name, platform, origin: 'pull' }, emit);
    });
  }

  /** The shared pipeline for every image source: resolve → fetch layers → flatten → build ext4 → publish. */
  async #build(
    source: ImageSource,
    opts: Caller & { name: string; platform: Platform; origin: string; force?: boolean; concurrency?: number; signal?: AbortSignal },
    emit: <E extends keyof PullEvents>(event: E, ...args: Parameters<PullEvents[E]>) => void,
  ): Promise<PullResult> {
    const { metadata, blobs, builder, temp } = this.#o;
    const signal = opts.signal;
    const resolved: ResolvedImage = await source.resolve({ platform: opts.platform, signal });
    const totalBytes = resolved.layers.reduce((n, l) => n + l.size, 0);
    emit('resolved', {
      reference: resolved.reference,
      digest: resolved.manifestDigest,
      platform: formatPlatform(resolved.platform),
      layers: resolved.layers.length,
      totalBytes,
    });

    const existing = await metadata.getImage(opts.user, opts.name);
    if (existing && !opts.force) {
      if (existing.source !== resolved.reference) {
        throw new ImageExistsError(opts.name, ` (by an image from ${existing.source})`);
      }
      if (existing.manifestDigest === resolved.manifestDigest) {
        const result: PullResult = {
          status: 'up-to-date',
          image: toImageInfo(existing, opts.user),
          downloadedLayers: 0,
          cachedLayers: resolved.layers.length,
          bytesDownloaded: 0,
        };
        emit('done', result);
        return result;
      }
    }

    if (existing) await this.#assertUnused(existing);
    const fetched = await fetchLayers(source, resolved.layers, blobs, metadata, {
      owner: opts.user,
      signal,
      concurrency: opts.concurrency,
      onLayer: (e) => emit('layer', e),
    });

    throwIfAborted(signal);
    emit('converting', { builder: builder.name });
    const diffIds = resolved.config.rootfs?.diff_ids ?? [];
    const inputs: LayerInput[] = resolved.layers.map((l, i) => ({
      digest: l.digest,
      diffId: diffIds[i],
      open: () => blobs.open(l.digest),
    }));
    const work = await temp.create();
    try {
      const tmpImage = join(work, 'rootfs.ext4');
      const built = await builder.build(flatten(inputs, { signal, tmpDir: work }), tmpImage, {
        signal,
        tmpDir: work,
        label: 'bhatti-rootfs',
      });
      throwIfAborted(signal);
      const { record, published } = await this.#publish(tmpImage, built, {
        name: opts.name,
        owner: opts.user,
        source: resolved.reference,
        origin: opts.origin,
        manifestDigest: resolved.manifestDigest,
        platform: resolved.platform,
        config: normaliseRuntimeConfig(resolved.config),
        layers: resolved.layers.map((l) => l.digest),
      }, existing, opts.force);
      const result: PullResult = {
        status: !published ? 'up-to-date' : existing ? 'updated' : 'pulled',
        image: toImageInfo(record, opts.user),
        downloadedLayers: fetched.downloaded,
        cachedLayers: fetched.cached,
        bytesDownloaded: fetched.bytesDownloaded,
      };
      emit('done', result);
      return result;
    } catch (err) {
      throw toBhattiError(err, 'building the image');
    } finally {
      await removeQuietly(work);
    }
  }

  /**
   * Moves a finished ext4 file into the store and commits its row (replacing `existing`
   * in the same transaction). The file becomes visible only once complete. If another
   * process published the same name meanwhile, `force` replaces it, an identical image
   * makes this a no-op, and anything else is a name clash.
   */
  async #publish(
    tmpImage: string,
    built: { size: number; digest: string },
    meta: Omit<ImageRecord, 'id' | 'file' | 'size' | 'fileDigest' | 'createdAt'>,
    existing: ImageRecord | undefined,
    force = false,
  ): Promise<{ record: ImageRecord; published: boolean }> {
    const { metadata, paths } = this.#o;
    const id = randomUUID();
    const finalPath = join(paths.imageStore, `${id}.ext4`);
    await chmod(tmpImage, 0o600);
    await publishFile(tmpImage, finalPath);
    try {
      const record: ImageRecord = {
        ...meta,
        id,
        file: relative(paths.root, finalPath),
        size: built.size,
        fileDigest: built.digest,
        createdAt: new Date(),
      };
      // Concurrent publishers of one name race here; re-read and decide again on a clash.
      for (let attempt = 0; ; attempt++) {
        let replace = attempt === 0 ? existing : undefined;
        const current = await metadata.getImage(meta.owner, meta.name);
        if (current && current.id !== replace?.id) {
          if (force) {
            await this.#assertUnused(current);
            replace = current;
          } else if (current.source === meta.source && current.manifestDigest === meta.manifestDigest) {
            await removeQuietly(finalPath);
            return { record: current, published: false };
          } else {
            throw new ImageExistsError(meta.name, ` (by an image from ${current.source})`);
          }
        }
        try {
          await metadata.putImage(record, { replaceId: replace?.id });
        } catch (err) {
          if (err instanceof ImageExistsError && attempt < 3) continue;
          throw err;
        }
        if (replace) await removeQuietly(join(paths.root, replace.file));
        break;
      }
      return { record, published: true };
    } catch (err) {
      await removeQuietly(finalPath);
      throw err;
    }
  }

  /**
   * Adds an ext4 file made elsewhere (e.g. a sandbox's saved root filesystem) as an image of
   * the caller's. The file is moved into the store; it must be on the data dir's filesystem
   * (use a scratch dir from the store's TempArea).
   */
  async addImageFile(
    file: string,
    opts: Caller & {
      name: string;
      source: string;
      origin: string;
      config: RuntimeConfig;
      platform: Platform;
      force?: boolean;
      signal?: AbortSignal;
    },
  ): Promise<ImageInfo> {
    validateImageName(opts.name);
    throwIfAborted(opts.signal);
    const existing = await this.#o.metadata.getImage(opts.user, opts.name);
    if (existing && !opts.force) throw new ImageExistsError(opts.name, ` (by an image from ${existing.source})`);
    if (existing) await this.#assertUnused(existing);
    const st = await stat(file);
    const digest = await sha256File(file, opts.signal);
    const { record } = await this.#publish(file, { size: st.size, digest }, {
      name: opts.name,
      owner: opts.user,
      source: opts.source,
      origin: opts.origin,
      manifestDigest: digest,
      platform: opts.platform,
      config: opts.config,
      layers: [],
    }, existing, opts.force);
    return toImageInfo(record, opts.user);
  }

  /** Sandboxes boot from copy-on-write views of the image file, so it must outlive them. */
  async #assertUnused(r: ImageRecord): Promise<void> {
    const users = await this.#o.metadata.sandboxesUsingImageFile(r.file);
    if (users.length > 0) throw new ImageInUseError(r.name, users);
  }

  /** Finds the record a caller means by `name`: their own first, then system images. */
  async #resolve(name: string, caller: Caller): Promise<ImageRecord> {
    const owners = caller.user === '' ? [''] : [caller.user, ''];
    for (const owner of owners) {
      for (const candidate of lookupCandidates(name)) {
        const r = await this.#o.metadata.getImage(owner, candidate);
        if (r) return r;
      }
    }
    // The same message whether the image does not exist or belongs to someone else.
    throw new ImageNotFoundError(name);
  }

  /** Images the caller can see: their own and the system's. */
  async list(caller: Caller & { signal?: AbortSignal }): Promise<ImageInfo[]> {
    throwIfAborted(caller.signal);
    const owners = caller.user === '' ? [''] : [caller.user, ''];
    const records = await this.#o.metadata.listImages(owners);
    return records.map((r) => toImageInfo(r, caller.user));
  }

  async inspect(name: string, caller: Caller & { signal?: AbortSignal }): Promise<ImageInfo> {
    throwIfAborted(caller.signal);
    return toImageInfo(await this.#resolve(name, caller), caller.user);
  }

  /**
   * Host path of an image file the caller may use (for engines that boot it).
   * Images are never modified once published; engines must not write to this path.
   */
  async imagePath(name: string, caller: Caller & { signal?: AbortSignal }): Promise<string> {
    throwIfAborted(caller.signal);
    const r = await this.#resolve(name, caller);
    return join(this.#o.paths.root, r.file);
  }

  /** @internal The stored file (relative to the data dir) of an image the caller already resolved. */
  async imageFileOf(id: string): Promise<string> {
    const r = await this.#o.metadata.getImageById(id);
    if (!r) throw new ImageNotFoundError(id);
    return r.file;
  }

  /** @internal An image by id, whoever owns it (for records that reference it). */
  async inspectById(id: string): Promise<ImageInfo | undefined> {
    const r = await this.#o.metadata.getImageById(id);
    return r ? toImageInfo(r, r.owner) : undefined;
  }

  /** Throws unless `name` is a valid image name the caller can create (or replace, with `force`). */
  async checkNameFree(name: string, opts: Caller & { force?: boolean }): Promise<void> {
    validateImageName(name);
    const existing = await this.#o.metadata.getImage(opts.user, name);
    if (!existing) return;
    if (!opts.force) throw new ImageExistsError(name, ` (by an image from ${existing.source})`);
    await this.#assertUnused(existing);
  }

  /** Deletes one of the caller's own images (system images only in the system scope). */
  async delete(name: string, caller: Caller & { signal?: AbortSignal }): Promise<ImageInfo> {
    throwIfAborted(caller.signal);
    const r = await this.#resolve(name, caller);
    if (r.owner !== caller.user) throw new PermissionDeniedError(`image "${name}" is a system image; only an administrator can delete it`);
    await this.#assertUnused(r);
    await this.#o.metadata.deleteImage(r.id);
    await removeQuietly(join(this.#o.paths.root, r.file));
    return toImageInfo(r, caller.user);
  }

  /** Removes cached blobs no image refers to and no pull used in the last hour. Returns what was freed. */
  async pruneBlobs(opts: { signal?: AbortSignal } = {}): Promise<{ blobs: number; bytes: number }> {
    const referenced = await this.#o.metadata.referencedBlobs();
    let blobsRemoved = 0;
    let bytes = 0;
    for (const blob of await this.#o.metadata.listBlobs()) {
      throwIfAborted(opts.signal);
      // Recently used blobs may belong to a pull still converting in another process.
      if (referenced.has(blob.digest) || Date.now() - blob.lastUsed.getTime() < PRUNE_GRACE_MS) continue;
      await this.#o.metadata.deleteBlob(blob.digest);
      await this.#o.blobs.delete(blob.digest);
      blobsRemoved++;
      bytes += blob.size;
    }
    return { blobs: blobsRemoved, bytes };
  }
}
