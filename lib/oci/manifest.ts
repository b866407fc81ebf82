/**
 * OCI and Docker manifest formats: media types, parsing with validation, and the checks that
 * decide whether we can turn an image into a root filesystem.
 */
import { UnsupportedImageError } from '../errors.js';
import { validateDigest } from './reference.js';
import type { Descriptor, OciImageConfig, Platform, RuntimeConfig } from './types.js';

export const MediaTypes = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What we ask registries for; schema1 is listed so a registry shows it rather than converting. */
export const MANIFEST_ACCEPT = [
  MediaTypes.ociIndex,
  MediaTypes.ociManifest,
  MediaTypes.dockerManifestList,
  MediaTypes.dockerManifest,
  MediaTypes.dockerSchema1Signed,
  MediaTypes.dockerSchema1,
];

export const INDEX_MEDIA_TYPES: readonly string[] = [MediaTypes.ociIndex, MediaTypes.dockerManifestList];
export const IMAGE_MANIFEST_MEDIA_TYPES: readonly string[] = [MediaTypes.ociManifest, MediaTypes.dockerManifest];
export const SCHEMA1_MEDIA_TYPES: readonly string[] = [MediaTypes.dockerSchema1, MediaTypes.dockerSchema1Signed];
export const CONFIG_MEDIA_TYPES: readonly string[] = [MediaTypes.ociConfig, MediaTypes.dockerConfig];

/** Layer media types we can unpack, with their compression. */
export const LAYER_MEDIA_TYPES: Readonly<Record<string, 'gzip' | 'zstd' | 'none'>> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'zstd',
  'application/vnd.docker.image.rootfs.diff.tar': 'none',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'gzip',
  'application/vnd.docker.image.rootfs.diff.tar.zstd': 'zstd',
};

const FOREIGN_LAYER_MEDIA_TYPES: readonly string[] = [
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
];

/** Compression of a layer by its media type, or undefined if we cannot unpack it. */
export function layerCompression(mediaType: string): 'gzip' | 'zstd' | 'none' | undefined {
  return LAYER_MEDIA_TYPES[mediaType];
}

export interface ParsedIndex {
  kind: 'index';
  mediaType: string;
  manifests: Descriptor[];
}

export interface ParsedImageManifest {
  kind: 'manifest';
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

export type ParsedManifest = ParsedIndex | ParsedImageManifest;

/**
 * The media type of manifest bytes: the registry's Content-Type when it is a manifest type,
 * else the document's own `mediaType`, else inferred from its shape (OCI makes the field optional).
 */
export function detectManifestMediaType(contentType: string | undefined, bytes: Buffer): string {
  const ct = contentType?.split(';')[0]!.trim().toLowerCase();
  const known = [...INDEX_MEDIA_TYPES, ...IMAGE_MANIFEST_MEDIA_TYPES, ...SCHEMA1_MEDIA_TYPES];
  if (ct && known.includes(ct)) return ct;
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    return ct ?? 'application/octet-stream';
  }
  if (doc && typeof doc === 'object') {
    const d = doc as Record<string, unknown>;
    if (typeof d.mediaType === 'string' && d.mediaType) return d.mediaType;
    if (d.schemaVersion === 1) return MediaTypes.dockerSchema1;
    if (Array.isArray(d.manifests)) return MediaTypes.ociIndex;
    if (d.config && Array.isArray(d.layers)) return MediaTypes.ociManifest;
  }
  return ct ?? 'application/octet-stream';
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Checks a descriptor from untrusted JSON: its digest later names files in the blob cache,
 * so it must be a well-formed digest and nothing else.
 */
export function parseDescriptor(v: unknown, what: string): Descriptor {
  if (!isRecord(v)) throw new UnsupportedImageError(`${what} is not a descriptor object`);
  const { mediaType, digest, size } = v;
  if (typeof mediaType !== 'string') throw new UnsupportedImageError(`${what} has no mediaType`);
  if (typeof digest !== 'string' || validateDigest(digest) !== undefined) {
    throw new UnsupportedImageError(`${what} has an invalid digest ${JSON.stringify(digest)}`);
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new UnsupportedImageError(`${what} ${digest} has an invalid size ${JSON.stringify(size)}`);
  }
  const desc: Descriptor = { mediaType, digest, size };
  if (isRecord(v.platform)) {
    const p = v.platform;
    if (typeof p.os === 'string' && typeof p.architecture === 'string') {
      desc.platform = { os: p.os, architecture: p.architecture };
      if (typeof p.variant === 'string' && p.variant) desc.platform.variant = p.variant;
    }
  }
  if (isRecord(v.annotations)) {
    desc.annotations = Object.fromEntries(
      Object.entries(v.annotations).filter((e): e is [string, string] => typeof e[1] === 'string'),
    );
  }
  if (Array.isArray(v.urls)) desc.urls = v.urls.filter((u): u is string => typeof u === 'string');
  return desc;
}

/**
 * Parses manifest bytes of the given media type into an index or an image manifest.
 * Schema1 and non-image artifacts raise UnsupportedImageError.
 */
export function parseManifest(bytes: Buffer, mediaType: string, ref: string): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new UnsupportedImageError(`manifest of ${ref} is not valid JSON (media type ${mediaType})`);
  }
  if (!isRecord(doc)) throw new UnsupportedImageError(`manifest of ${ref} is not a JSON object`);
  if (SCHEMA1_MEDIA_TYPES.includes(mediaType) || doc.schemaVersion === 1) {
    throw new UnsupportedImageError(
      `${ref} uses the Docker schema 1 manifest format, which is deprecated and not supported; re-push it with a current docker or skopeo`,
    );
  }
  if (doc.schemaVersion !== 2) {
    throw new UnsupportedImageError(`manifest of ${ref} has unsupported schemaVersion ${JSON.stringify(doc.schemaVersion)}`);
  }
  if (INDEX_MEDIA_TYPES.includes(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw new UnsupportedImageError(`index of ${ref} has no manifests list`);
    return {
      kind: 'index',
      mediaType,
      manifests: doc.manifests.map((m, i) => parseDescriptor(m, `index entry ${i} of ${ref}`)),
    };
  }
  if (IMAGE_MANIFEST_MEDIA_TYPES.includes(mediaType)) {
    if (!Array.isArray(doc.layers)) throw new UnsupportedImageError(`manifest of ${ref} has no layers list`);
    return {
      kind: 'manifest',
      mediaType,
      config: parseDescriptor(doc.config, `config of ${ref}`),
      layers: doc.layers.map((l, i) => parseDescriptor(l, `layer ${i} of ${ref}`)),
    };
  }
  throw new UnsupportedImageError(`${ref} has manifest media type ${mediaType}, which is not a container image`);
}

/** True for index entries that are not runnable images (buildkit attestations, `unknown/unknown`). */
export function isAttestationEntry(desc: Descriptor): boolean {
  if (desc.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest') return true;
  return desc.platform?.os === 'unknown' && desc.platform.architecture === 'unknown';
}

/** Refuses manifests whose config or layers we cannot turn into a root filesystem. */
export function checkImageManifest(m: ParsedImageManifest, ref: string): void {
  if (!CONFIG_MEDIA_TYPES.includes(m.config.mediaType)) {
    throw new UnsupportedImageError(`${ref} is not a container image (config media type ${m.config.mediaType})`);
  }
  m.layers.forEach((l, i) => {
    if (FOREIGN_LAYER_MEDIA_TYPES.includes(l.mediaType) || (l.urls && l.urls.length > 0)) {
      throw new UnsupportedImageError(
        `${ref} has a foreign (non-distributable) layer ${l.digest} (${l.mediaType}), as Windows images do; only Linux images are supported`,
      );
    }
    if (layerCompression(l.mediaType) === undefined) {
      throw new UnsupportedImageError(`${ref} layer ${i} (${l.digest}) has unsupported media type ${l.mediaType}`);
    }
  });
}

/** Parses and checks image config JSON bytes (already verified against their digest). */
export function parseImageConfig(bytes: Buffer, ref: string, layerCount: number): OciImageConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new UnsupportedImageError(`image config of ${ref} is not valid JSON`);
  }
  if (!isRecord(doc)) throw new UnsupportedImageError(`image config of ${ref} is not a JSON object`);
  const config = doc as OciImageConfig;
  if (config.config !== undefined && config.config !== null && !isRecord(config.config)) {
    throw new UnsupportedImageError(`image config of ${ref} has a malformed "config" section`);
  }
  const rootfs = config.rootfs;
  if (rootfs !== undefined) {
    if (!isRecord(rootfs) || !Array.isArray(rootfs.diff_ids)) {
      throw new UnsupportedImageError(`image config of ${ref} has a malformed rootfs section`);
    }
    if (rootfs.type !== 'layers') throw new UnsupportedImageError(`image config of ${ref} has rootfs type ${JSON.stringify(rootfs.type)}`);
    if (rootfs.diff_ids.length !== layerCount) {
      throw new UnsupportedImageError(
        `image config of ${ref} lists ${rootfs.diff_ids.length} diff_ids but the manifest has ${layerCount} layers`,
      );
    }
    rootfs.diff_ids.forEach((d, i) => {
      if (typeof d !== 'string' || validateDigest(d) !== undefined) {
        throw new UnsupportedImageError(`image config of ${ref} has an invalid diff_id ${i}: ${JSON.stringify(d)}`);
      }
    });
  }
  return config;
}

/** Platform an image config declares, if it declares one. */
export function configPlatform(config: OciImageConfig): Platform | undefined {
  if (typeof config.os !== 'string' || typeof config.architecture !== 'string') return undefined;
  const p: Platform = { os: config.os, architecture: config.architecture };
  if (typeof config.variant === 'string' && config.variant) p.variant = config.variant;
  return p;
}

/** PATH docker sets when an image defines none. */
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function stringArray(v: unknown): string[] | null {
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : null;
}

/**
 * The runtime parts of an image config with docker's defaults filled in: PATH when the image
 * sets none, working directory `/`, user `root`, empty labels and ports.
 */
export function normaliseRuntimeConfig(config: OciImageConfig): RuntimeConfig {
  const c = isRecord(config.config) ? config.config : {};
  const env = stringArray(c.Env) ?? [];
  if (!env.some((e) => e.startsWith('PATH='))) env.unshift(DEFAULT_PATH);
  const labels: Record<string, string> = {};
  if (isRecord(c.Labels)) {
    for (const [k, v] of Object.entries(c.Labels)) if (typeof v === 'string') labels[k] = v;
  }
  const cmd = stringArray(c.Cmd);
  const entrypoint = stringArray(c.Entrypoint);
  return {
    env,
    cmd: cmd && cmd.length > 0 ? cmd : null,
    entrypoint: entrypoint && entrypoint.length > 0 ? entrypoint : null,
    workingDir: typeof c.WorkingDir === 'string' && c.WorkingDir ? c.WorkingDir : '/',
    user: typeof c.User === 'string' && c.User ? c.User : 'root',
    labels,
    exposedPorts: isRecord(c.ExposedPorts) ? Object.keys(c.ExposedPorts).sort() : [],
  };
}
