/** OCI distribution: references, platforms, manifests and the registry client/source. */
export type { Platform, Descriptor, RuntimeConfig, ResolvedImage, OciImageConfig, OpenBlobOptions, ImageSource } from './types.js';
export {
  parseReference,
  formatReference,
  familiarReference,
  manifestRef,
  registryApiHost,
  validateDigest,
  DEFAULT_REGISTRY,
  DEFAULT_TAG,
  type ImageReference,
} from './reference.js';
export {
  parsePlatform,
  platformProblem,
  formatPlatform,
  hostPlatform,
  normalisePlatform,
  platformEquals,
  platformMatches,
  platformScore,
  selectPlatform,
} from './platform.js';
export {
  MediaTypes,
  MANIFEST_ACCEPT,
  LAYER_MEDIA_TYPES,
  layerCompression,
  normaliseRuntimeConfig,
  parseManifest,
  parseImageConfig,
  detectManifestMediaType,
  type ParsedManifest,
  type ParsedIndex,
  type ParsedImageManifest,
} from './manifest.js';
export {
  RegistryClient,
  isLoopbackHost,
  parseChallenge,
  MANIFEST_MAX_BYTES,
  type RegistryClientOptions,
  type RegistryCredentials,
  type ManifestResponse,
} from './registry-client.js';
export { RegistrySource, type RegistrySourceOptions } from './registry-source.js';
