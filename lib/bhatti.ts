import { access, constants, mkdir } from 'node:fs/promises';
import { InvalidArgumentError } from './errors.js';
import { Mke2fsBuilder } from './ext4/mke2fs-builder.js';
import type { Ext4Builder } from './ext4/types.js';
import { ImageStore } from './images/image-store.js';
import type { BlobStore } from './storage/blob-store.js';
import { dataPaths, defaultDataDir, type DataPaths } from './storage/data-dir.js';
import { FsBlobStore } from './storage/fs-blob-store.js';
import { KnexMetadataStore } from './storage/knex-metadata-store.js';
import type { MetadataStore } from './storage/metadata-store.js';
import { TempArea } from './storage/temp-area.js';
import type { Engine } from './vm/engine.js';
import { QemuEngine } from './vm/qemu/qemu-engine.js';
import { VmManager } from './vm/vm-manager.js';
import { VolumeStore } from './vm/volume-store.js';

export interface BhattiOptions {
  /** Data directory; defaults to `BHATTI_DATA_DIR`, else `/var/lib/bhatti` for root, else the XDG data dir. */
  dataDir?: string;
  /** Metadata store; defaults to an SQLite file in the data dir. */
  metadata?: MetadataStore;
  /** Blob store; defaults to `<dataDir>/blobs` on the local filesystem. */
  blobs?: BlobStore;
  /** ext4 builder; defaults to the mke2fs-based one. */
  builder?: Ext4Builder;
  /** VM engine; defaults to QEMU with its boot kit in `<dataDir>/kit`. */
  engine?: Engine;
  /** Acceleration for the default QEMU engine: `auto` (probe KVM, fall back to TCG), `kvm` or `tcg`. */
  accel?: 'auto' | 'kvm' | 'tcg';
}

/**
 * The composition root: wires storage, builders and services for one data dir.
 * The CLI and embedders both start here; `await using bhatti = await Bhatti.open()`.
 */
export class Bhatti implements AsyncDisposable {
  readonly paths: DataPaths;
  readonly metadata: MetadataStore;
  readonly images: ImageStore;
  readonly volumes: VolumeStore;
  readonly vms: VmManager;
  readonly engine: Engine;

  private constructor(o: { paths: DataPaths; metadata: MetadataStore; images: ImageStore; volumes: VolumeStore; vms: VmManager; engine: Engine }) {
    this.paths = o.paths;
    this.metadata = o.metadata;
    this.images = o.images;
    this.volumes = o.volumes;
    this.vms = o.vms;
    this.engine = o.engine;
  }

  static async open(opts: BhattiOptions = {}): Promise<Bhatti> {
    if (opts.dataDir !== undefined && opts.dataDir.trim() === '') throw new InvalidArgumentError('invalid data dir "": give a directory path');
    const paths = dataPaths(opts.dataDir ?? defaultDataDir());
    await prepareDataDir(paths.root);
    const temp = new TempArea(paths.tmp);
    const metadata = opts.metadata ?? KnexMetadataStore.sqlite(paths.database);
    try {
      await metadata.init().catch((err: { code?: string }) => {
        if (err?.code === 'SQLITE_CANTOPEN' || err?.code === 'SQLITE_READONLY' || err?.code === 'SQLITE_PERM') {
          throw new InvalidArgumentError(`cannot use data dir "${paths.root}": its database cannot be opened for writing`, { cause: err });
        }
        throw err;
      });
      const blobs = opts.blobs ?? new FsBlobStore(paths.blobs, temp);
      const images = new ImageStore({ paths, metadata, blobs, builder: opts.builder ?? new Mke2fsBuilder(), temp });
      await images.init();
      const volumes = new VolumeStore({ paths, metadata, temp });
      await volumes.init();
      const engine = opts.engine ?? new QemuEngine({ kitDir: paths.kit, accel: opts.accel ?? accelFromEnv() });
      const vms = new VmManager({ paths, metadata, images, volumes, engine, temp });
      await vms.init();
      return new Bhatti({ paths, metadata, images, volumes, vms, engine });
    } catch (err) {
      await metadata.close().catch(() => undefined);
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.metadata.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function accelFromEnv(): 'auto' | 'kvm' | 'tcg' {
  const v = process.env.BHATTI_ACCEL;
  return v === 'kvm' || v === 'tcg' ? v : 'auto';
}

/** Creates the data dir or explains, naming it, why it cannot be used. */
async function prepareDataDir(root: string): Promise<void> {
  try {
    await mkdir(root, { recursive: true, mode: 0o700 });
    await access(root, constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EEXIST' || code === 'ENOTDIR'
        ? 'it is not a directory'
        : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
          ? 'it is not writable'
          : (err as Error).message;
    throw new InvalidArgumentError(`cannot use data dir "${root}": ${why}`, { cause: err });
  }
}
