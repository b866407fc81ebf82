/**
 * @bhatti/core — run sandboxes as Linux microVMs booted from ext4 images.
 * This file is the package's only public entry.
 */

export const VERSION = '0.1.0';

export { Bhatti, type BhattiOptions } from './bhatti.js';
export * from './errors.js';

export { ImageStore, type Caller, type PullOptions, type ImageStoreOptions } from './images/image-store.js';
export type { ImageInfo, ImageScope } from './images/image-info.js';
export type { PullEvents, PullResult, PullStatus, LayerProgress } from './images/events.js';
export { validateImageName } from './images/names.js';

export type { MetadataStore, ImageRecord, BlobRecord, SandboxRecord, SandboxVolumeRecord, VolumeRecord } from './storage/metadata-store.js';
export { KnexMetadataStore } from './storage/knex-metadata-store.js';
export type { BlobStore, BlobOpener, IngestOptions, ProgressFn } from './storage/blob-store.js';
export { FsBlobStore } from './storage/fs-blob-store.js';
export { TempArea } from './storage/temp-area.js';
export { defaultDataDir, dataPaths, type DataPaths } from './storage/data-dir.js';

export type { Ext4Builder, Ext4BuildOptions, Ext4BuildResult } from './ext4/types.js';
export { Mke2fsBuilder, type Mke2fsBuilderOptions } from './ext4/mke2fs-builder.js';

export type { TarEntry, TarHeader, EntryType, LayerInput } from './layers/types.js';
export { flatten, flattenToTar, type FlattenOptions } from './layers/flatten.js';

export type { ImageSource, ResolvedImage, Descriptor, Platform, RuntimeConfig, OciImageConfig, OpenBlobOptions } from './oci/types.js';
export { parseReference, type ImageReference } from './oci/reference.js';
export { parsePlatform, formatPlatform, hostPlatform } from './oci/platform.js';
export { RegistrySource, type RegistrySourceOptions } from './oci/registry-source.js';
export { RegistryClient, type RegistryClientOptions, type RegistryCredentials, type ManifestResponse, type RequestOptions } from './oci/registry-client.js';

export type { Engine, SandboxSpec, RunningInfo, ExecRequest, ExecResult, VolumeAttachment } from './vm/engine.js';
export { VmManager, type CreateSandboxOptions, type ExecOptions } from './vm/vm-manager.js';
export type { SandboxInfo } from './vm/sandbox-info.js';
export { Sandbox, type RunResult } from './vm/sandbox.js';
export { VolumeStore, type VolumeInfo } from './vm/volume-store.js';
export { parseVolumeSpec, parseSize, validateMountPath, type VolumeMountSpec } from './vm/names.js';
export { QemuEngine, type QemuEngineOptions } from './vm/qemu/qemu-engine.js';
export { buildBootKit, bootKitStatus, type BootKitStatus, type BootKitManifest } from './vm/kit/boot-kit.js';
export type { SandboxState } from './storage/metadata-store.js';
export type { Accel } from './vm/qemu/accel-probe.js';

export { Operation, TypedEventEmitter, type EventMap, type TypedEmitter } from './util/operation.js';
