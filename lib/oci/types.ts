import type { Readable } from 'node:stream';

/** An OS/architecture pair as OCI writes it (`linux/arm64/v8`). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** An OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

/** The parts of an image config a sandbox needs, normalised from OCI/Docker JSON. */
export interface RuntimeConfig {
  env: string[];
  cmd: string[] | null;
  entrypoint: string[] | null;
  workingDir: string;
  user: string;
  labels: Record<string, string>;
  exposedPorts: string[];
}

/** A manifest that has been fetched, verified against its digest and reduced to one platform. */
export interface ResolvedImage {
  /** Canonical reference the image was resolved from, e.g. `docker.io/library/python:3.12`. */
  reference: string;
  /** Digest of the platform-specific manifest. */
  manifestDigest: string;
  /** Digest of the index the manifest was chosen from, when there was one. */
  indexDigest?: string;
  mediaType: string;
  platform: Platform;
  configDescriptor: Descriptor;
  /** Parsed image config JSON (verified against configDescriptor.digest). */
  config: OciImageConfig;
  /** Layers bottom-first, as in the manifest. */
  layers: Descriptor[];
}

/** The OCI image config JSON, as much of it as we read. */
export interface OciImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  config?: {
    Env?: string[] | null;
    Cmd?: string[] | null;
    Entrypoint?: string[] | null;
    WorkingDir?: string;
    User?: string;
    Labels?: Record<string, string> | null;
    ExposedPorts?: Record<string, unknown> | null;
  };
  rootfs?: { type: string; diff_ids: string[] };
  history?: unknown[];
}

export interface OpenBlobOptions {
  signal?: AbortSignal;
  /** Byte offset to start at, for resuming a cut-short download. */
  offset?: number;
}

/**
 * One small interface for every place an image comes from (a registry, a `docker save`
 * tar, an OCI layout), so a single verify → flatten → build → publish pipeline serves all.
 */
export interface ImageSource {
  /** Human-readable origin recorded as the image's source, e.g. `docker.io/library/python:3.12`. */
  readonly description: string;
  /** Fetches and verifies the manifest (choosing `platform` from an index) and the config. */
  resolve(opts: { platform: Platform; signal?: AbortSignal }): Promise<ResolvedImage>;
  /** Opens a blob's bytes as stored (compressed layers stay compressed). The caller verifies the digest. */
  openBlob(desc: Descriptor, opts?: OpenBlobOptions): Promise<Readable>;
}
