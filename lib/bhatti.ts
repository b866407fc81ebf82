import { mkdir } from 'node:fs/promises';
import { Mke2fsBuilder } from './ext4/mke2fs-builder.js';
import type { Ext4Builder } from './ext4/types.js';
import { ImageStore } from './images/image-store.js';
import type { BlobStore } from './storage/blob-store.js';
import { dataPaths, defaultDataDir, type DataPaths } from './storage/data-dir.js';
import { FsBlobStore } from './storage/fs-blob-store.js';
import { KnexMetadataStore } from './storage/knex-metadata-store.js';
import type { MetadataStore } from './storage/metadata-store.js';
import { TempArea } from './storage/temp-area.js';

export interface BhattiOptions {
  /** Data directory; defaults to `BHATTI_DATA_DIR`, else `/var/lib/bhatti` for root, else the XDG data dir. */
  dataDir?: string;
  /** Metadata store; defaults to an SQLite file in the data dir. */
  metadata?: MetadataStore;
  /** Blob store; defaults to `<dataDir>/blobs` on the local filesystem. */
  blobs?: BlobStore;
  /** ext4 builder; defaults to the mke2fs-based one. */
  builder?: Ext4Builder;
}

/**
 * The composition root: wires storage, builders and services for one data dir.
 * The CLI and embedders both start here; `await using bhatti = await Bhatti.open()`.
 */
export class Bhatti implements AsyncDisposable {
  readonly paths: DataPaths;
  readonly metadata: MetadataStore;
  readonly images: ImageStore;

  private constructor(paths: DataPaths, metadata: MetadataStore, images: ImageStore) {
    this.paths = paths;
    this.metadata = metadata;
    this.images = images;
  }

  static async open(opts: BhattiOptions = {}): Promise<Bhatti> {
    const paths = dataPaths(opts.dataDir ?? defaultDataDir());
    await mkdir(paths.root, { recursive: true, mode: 0o700 });
    const temp = new TempArea(paths.tmp);
    const metadata = opts.metadata ?? KnexMetadataStore.sqlite(paths.database);
    try {
      await metadata.init();
      const blobs = opts.blobs ?? new FsBlobStore(paths.blobs, temp);
      const images = new ImageStore({ paths, metadata, blobs, builder: opts.builder ?? new Mke2fsBuilder(), temp });
      await images.init();
      return new Bhatti(paths, metadata, images);
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
