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

/** A volume: an ext4 file owned by a user, attachable to sandboxes. */
export interface VolumeRecord {
  id: string;
  name: string;
  owner: string;
  size: number;
  /** Path relative to the data dir. */
  file: string;
  createdAt: Date;
}

export type SandboxState = 'creating' | 'starting' | 'running' | 'stopped';

export interface SandboxVolumeRecord {
  volumeId: string;
  mountPath: string;
  readOnly: boolean;
}

/** A sandbox row: what it was made from and how to reach it while it runs. */
export interface SandboxRecord {
  id: string;
  name: string;
  owner: string;
  imageId: string;
  imageName: string;
  /** Base image file, relative to the data dir. */
  imageFile: string;
  engine: string;
  state: SandboxState;
  cpus: number;
  memoryMiB: number;
  /** Runtime defaults taken from the image (env, workdir, user). */
  config: RuntimeConfig;
  /** Engine-specific process facts while running (JSON-serialisable). */
  runtime: Record<string, unknown> | null;
  volumes: SandboxVolumeRecord[];
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
  /** Records a blob as present and usable by `owner`, and marks it used now (prune spares recent blobs). */
  recordBlob(blob: BlobRecord, owner: string): Promise<void>;
  /** Whether `owner` has fetched and verified this blob before. */
  blobOwnedBy(digest: string, owner: string): Promise<boolean>;
  /** Blob digests referenced by any image. */
  referencedBlobs(): Promise<Set<string>>;
  /** Blobs with the time they were last recorded or used. */
  listBlobs(): Promise<(BlobRecord & { lastUsed: Date })[]>;
  deleteBlob(digest: string): Promise<void>;

  /**
   * Inserts a sandbox with its volume attachments in one transaction. Returns `name-taken` if
   * the owner has a sandbox of that name, or the id of a volume it cannot attach (another
   * sandbox writes to it, or it wants to write to one others use) — checked inside the same
   * transaction, so two concurrent creates cannot both attach one volume read-write.
   */
  insertSandbox(record: SandboxRecord): Promise<{ ok: true } | { ok: false; reason: 'name-taken' } | { ok: false; reason: 'volume-busy'; volumeId: string }>;
  updateSandbox(id: string, change: { state?: SandboxState; runtime?: Record<string, unknown> | null }): Promise<void>;
  /** Moves a sandbox from state `from` to `to` only if it is still in `from`; false if another process got there first. */
  transitionSandbox(id: string, from: SandboxState, to: SandboxState, runtime: Record<string, unknown> | null): Promise<boolean>;
  getSandbox(owner: string, name: string): Promise<SandboxRecord | undefined>;
  listSandboxes(owners?: string[]): Promise<SandboxRecord[]>;
  deleteSandbox(id: string): Promise<void>;
  /** Names of sandboxes whose overlay sits on this image file. */
  sandboxesUsingImageFile(file: string): Promise<string[]>;
  sandboxesUsingVolume(volumeId: string): Promise<{ name: string; state: SandboxState; readOnly: boolean }[]>;

  /** Returns false if the owner already has a volume of that name. */
  insertVolume(record: VolumeRecord): Promise<boolean>;
  getVolume(owner: string, name: string): Promise<VolumeRecord | undefined>;
  getVolumeById(id: string): Promise<VolumeRecord | undefined>;
  listVolumes(owners: string[]): Promise<VolumeRecord[]>;
  deleteVolume(id: string): Promise<void>;
  volumeFiles(): Promise<Set<string>>;
}
