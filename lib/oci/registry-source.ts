/**
 * `ImageSource` for an image in a registry: resolves a reference to one platform's verified
 * manifest and config, and streams its blobs.
 */
import type { Readable } from 'node:stream';
import { PlatformNotFoundError, UnsupportedImageError, throwIfAborted } from '../errors.js';
import {
  checkImageManifest,
  configPlatform,
  isAttestationEntry,
  parseImageConfig,
  parseManifest,
  type ParsedImageManifest,
} from './manifest.js';
import { formatPlatform, normalisePlatform, platformMatches, platformProblem, selectPlatform } from './platform.js';
import { manifestRef, parseReference, type ImageReference } from './reference.js';
import { RegistryClient, type RegistryClientOptions } from './registry-client.js';
import type { Descriptor, ImageSource, OpenBlobOptions, Platform, ResolvedImage } from './types.js';

/** Image configs are JSON; a few MiB covers long histories. */
const CONFIG_MAX_BYTES = 8 * 1024 * 1024;
/** An index may point at another index; more nesting than this is a loop or an attack. */
const MAX_INDEX_DEPTH = 2;

export type RegistrySourceOptions = Omit<RegistryClientOptions, 'registry'>;

export class RegistrySource implements ImageSource {
  readonly reference: ImageReference;
  readonly client: RegistryClient;
  readonly description: string;

  constructor(reference: string | ImageReference, opts: RegistrySourceOptions = {}) {
    this.reference = typeof reference === 'string' ? parseReference(reference) : reference;
    this.description = this.reference.toString();
    this.client = new RegistryClient({ ...opts, registry: this.reference.registry });
  }

  async resolve(opts: { platform: Platform; signal?: AbortSignal }): Promise<ResolvedImage> {
    const { platform, signal } = opts;
    const ref = this.reference;
    const repo = ref.repository;
    let fetched = await this.client.getManifest(repo, manifestRef(ref), { signal });
    let what = this.description;
    let indexDigest: string | undefined;
    let chosenPlatform: Platform | undefined;
    let parsed = parseManifest(fetched.bytes, fetched.mediaType, what);

    for (let depth = 0; parsed.kind === 'index'; depth++) {
      if (depth >= MAX_INDEX_DEPTH) throw new UnsupportedImageError(`${this.description} nests image indexes too deeply`);
      indexDigest ??= fetched.digest;
      const entries = parsed.manifests.filter((m) => m.platform && !isAttestationEntry(m));
      const i = selectPlatform(platform, entries.map((m) => m.platform!));
      if (i < 0) {
        const available = [...new Set(entries.map((m) => describePlatform(m.platform!)))];
        throw new PlatformNotFoundError(formatPlatform(platform), available);
      }
      const chosen = entries[i]!;
      checkPlatform(chosen.platform!, `the index entry ${chosen.digest} of ${this.description}`);
      chosenPlatform = chosen.platform;
      throwIfAborted(signal);
      fetched = await this.client.getManifest(repo, chosen.digest, { signal });
      checkSize(chosen, fetched.bytes.length, `manifest ${chosen.digest} of ${this.description}`);
      what = `${this.description} (${formatPlatform(chosen.platform!)})`;
      parsed = parseManifest(fetched.bytes, fetched.mediaType, what);
    }

    const manifest: ParsedImageManifest = parsed;
    checkImageManifest(manifest, what);
    throwIfAborted(signal);
    const configBytes = await this.client.readBlob(repo, manifest.config.digest, CONFIG_MAX_BYTES, { signal });
    checkSize(manifest.config, configBytes.length, `config ${manifest.config.digest} of ${what}`);
    const config = parseImageConfig(configBytes, what, manifest.layers.length);

    const declared = configPlatform(config);
    // The stored platform comes from here when no index chose one; it must parse back later.
    if (!chosenPlatform && declared) checkPlatform(declared, `the config of ${what}`);
    // A single-platform image for another CPU would not boot; say so rather than build it.
    if (!chosenPlatform && declared && !platformMatches(platform, declared)) {
      throw new PlatformNotFoundError(formatPlatform(platform), [formatPlatform(declared)]);
    }

    return {
      reference: this.description,
      manifestDigest: fetched.digest,
      ...(indexDigest ? { indexDigest } : {}),
      mediaType: manifest.mediaType,
      // Canonical spelling, so stored platforms compare equal however the image wrote them.
      platform: normalisePlatform(chosenPlatform ?? declared ?? platform),
      configDescriptor: manifest.config,
      config,
      layers: manifest.layers,
    };
  }

  openBlob(desc: Descriptor, opts: OpenBlobOptions = {}): Promise<Readable> {
    return this.client.openBlob(this.reference.repository, desc.digest, opts);
  }
}

/** An image-supplied platform is stored and parsed back later, so it must be plain tokens. */
function checkPlatform(p: Platform, what: string): void {
  const why = platformProblem(p);
  if (why) throw new UnsupportedImageError(`${what} declares an invalid platform ${describePlatform(p)}: ${why}`);
}

/** A platform for messages; image-supplied components may hold anything, so they are quoted when odd. */
function describePlatform(p: Platform): string {
  return platformProblem(p) ? JSON.stringify([p.os, p.architecture, p.variant ?? ''].join('/')) : formatPlatform(p);
}

function checkSize(desc: Descriptor, actual: number, what: string): void {
  if (desc.size !== actual) throw new UnsupportedImageError(`${what} is ${actual} bytes but its descriptor says ${desc.size}`);
}
