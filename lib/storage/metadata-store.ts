import type { RuntimeConfig, Platform } from '../oci/types.js';

/** One published image as the metadata store records it. */
export interface ImageRecord {
  id: string;
  name: string;
  /** Owning user; `''` is the system (visible to everyone). */
  owner: string;
  /** Where it came from, e.g. `docker.io/library/python:3.12`. */
  source: string;
  /** How it was made: `pull`, `import`, `save`, `tier`. */
  origin: string;
  manifestDigest: string;
  platform: Platform;
  config: RuntimeConfig;
  /** Layer digests bottom-first (blob-cache references). */
  layers: string[];
  /** Image file path relative to the data dir. */
  file: string;
  /** Bytes of the ext4 file. */
  size: number;
  /** sha256 of the ext4 file. */
  fileDigest: string;
  createdAt: Date;
}

/** A blob the content store holds. */
export interface BlobRecord {
  digest: string;
  size: number;
  mediaType: string;
}

/**
 * Names, owners and references — kept apart from the content itself (containerd's split).
 * The embedded implementation is knex + SQLite; nothing above this interface is SQLite-specific.
 */
export interface MetadataStore {
  /** Runs migrations; idempotent. */
  init(): Promise<void>;
  close(): Promise<void>;
  getImage(owner: string, name: string): Promise<ImageRecord | undefined>;
  getImageById(id: string): Promise<ImageRecord | undefined>;
  /** Images of one owner, or of several (e.g. the caller and the system). */
  listImages(owners: string[]): Promise<ImageRecord[]>;
  /**
   * Inserts an image, atomically replacing `replaceId` (the previous image of the same
   * owner+name) when given. Fails with ImageExistsError if the name is taken otherwise.
   */
  putImage(record: ImageRecord, opts?: { replaceId?: string }): Promise<void>;
  deleteImage(id: string): Promise<boolean>;
  /** All image file paths (relative to the data dir) that rows point at. */
  imageFiles(): Promise<Set<string>>;
  recordBlob(blob: BlobRecord): Promise<void>;
  /** Blob digests referenced by any image. */
  referencedBlobs(): Promise<Set<string>>;
  listBlobs(): Promise<BlobRecord[]>;
  deleteBlob(digest: string): Promise<void>;
}
