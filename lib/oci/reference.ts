/**
 * Image references (`python:3.12`, `ghcr.io/org/app@sha256:…`) parsed and normalised the
 * way docker's distribution/reference package does, so a name means here what it means
 * to `docker pull`.
 */
import { InvalidReferenceError } from '../errors.js';

/** Registry used when a reference names none. */
export const DEFAULT_REGISTRY = 'docker.io';
/** docker's old spelling of the default registry; normalised to `docker.io`. */
const LEGACY_DEFAULT_REGISTRY = 'index.docker.io';
/** Host that actually serves the Docker Hub API. */
const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
/** Namespace docker adds to single-component Docker Hub names (`python` → `library/python`). */
const OFFICIAL_NAMESPACE = 'library';
export const DEFAULT_TAG = 'latest';
/** distribution/reference NameTotalLengthMax: domain + path. */
const NAME_MAX = 255;

// Grammar from distribution/reference (regexp.go), written out here.
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const IPV6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|${IPV6})(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
const BARE_ID_RE = /^[a-f0-9]{64}$/;

/** Hex lengths of the digest algorithms docker (go-digest) knows. */
const DIGEST_HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** A parsed, normalised image reference. */
export interface ImageReference {
  /** Registry host as written in references, e.g. `docker.io`, `127.0.0.1:5000`. */
  readonly registry: string;
  /** Repository path, e.g. `library/python`. */
  readonly repository: string;
  /** Tag; `latest` when neither tag nor digest was given. */
  readonly tag?: string;
  /** Digest (`sha256:…`); when present it wins over the tag for fetching. */
  readonly digest?: string;
  /** `registry/repository` */
  readonly name: string;
  /** Canonical form, e.g. `docker.io/library/python:3.12`. */
  toString(): string;
}

class ParsedReference implements ImageReference {
  constructor(
    readonly registry: string,
    readonly repository: string,
    readonly tag: string | undefined,
    readonly digest: string | undefined,
  ) {}
  get name(): string {
    return `${this.registry}/${this.repository}`;
  }
  toString(): string {
    return formatReference(this);
  }
  toJSON(): string {
    return this.toString();
  }
}

/** Canonical string of a reference: `registry/repo[:tag][@digest]`. */
export function formatReference(ref: Pick<ImageReference, 'registry' | 'repository' | 'tag' | 'digest'>): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** Short form docker prints: `python:3.12`, `user/app:1`, `ghcr.io/o/a:1`. */
export function familiarReference(ref: ImageReference): string {
  let name = ref.name;
  if (ref.registry === DEFAULT_REGISTRY) {
    name = ref.repository.startsWith(`${OFFICIAL_NAMESPACE}/`) && ref.repository.split('/').length === 2
      ? ref.repository.slice(OFFICIAL_NAMESPACE.length + 1)
      : ref.repository;
  }
  return formatReference({ registry: '', repository: name, tag: ref.tag, digest: ref.digest }).slice(1);
}

/** The string that actually selects a manifest: the digest if there is one, else the tag. */
export function manifestRef(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? DEFAULT_TAG;
}

/** Host (and port) that serves a registry's `/v2/` API: Docker Hub's lives elsewhere. */
export function registryApiHost(registry: string): string {
  return registry === DEFAULT_REGISTRY || registry === LEGACY_DEFAULT_REGISTRY ? DOCKER_HUB_API_HOST : registry;
}

/** Validates a digest string as docker does: known algorithm, lowercase hex of the right length. */
export function validateDigest(digest: string): string | undefined {
  if (!DIGEST_RE.test(digest)) return 'digest must look like algorithm:hex';
  const colon = digest.indexOf(':');
  const algo = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  const len = DIGEST_HEX_LENGTH[algo];
  if (len === undefined) return `unsupported digest algorithm "${algo}"`;
  if (hex.length !== len || !/^[a-f0-9]+$/.test(hex)) return `${algo} digest must be ${len} lowercase hex characters`;
  return undefined;
}

/**
 * Parses and normalises an image reference like `docker pull` does: a missing registry
 * means Docker Hub (`docker.io`, official images under `library/`), a missing tag and
 * digest means `:latest`, and `name:tag@digest` keeps both.
 */
export function parseReference(input: string): ImageReference {
  const fail = (reason: string): never => {
    throw new InvalidReferenceError(input, reason);
  };
  if (typeof input !== 'string' || input.length === 0) fail('empty reference');
  if (BARE_ID_RE.test(input)) fail('cannot specify 64-byte hexadecimal strings');

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    const bad = validateDigest(digest);
    if (bad) fail(bad);
  }

  // A tag follows the last ':' only if no '/' comes after it (else the ':' is a port).
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon !== -1 && !rest.slice(colon + 1).includes('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) fail(`invalid tag "${tag}"`);
  }

  // splitDockerDomain: the first component is a registry only if it looks like a host
  // ('.' or ':'), is "localhost", or has uppercase letters (repository paths cannot).
  let registry: string;
  let repository: string;
  const slash = rest.indexOf('/');
  const first = slash === -1 ? '' : rest.slice(0, slash);
  if (slash === -1 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    registry = DEFAULT_REGISTRY;
    repository = rest;
  } else {
    registry = first;
    repository = rest.slice(slash + 1);
  }
  if (registry === LEGACY_DEFAULT_REGISTRY) registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && repository.length > 0 && !repository.includes('/')) {
    repository = `${OFFICIAL_NAMESPACE}/${repository}`;
  }

  if (!DOMAIN_RE.test(registry)) fail(`invalid registry "${registry}"`);
  // The grammar allows any digits; a port outside 1-65535 would only fail later as a bare "Invalid URL".
  const port = /:([0-9]+)$/.exec(registry)?.[1];
  if (port !== undefined && !(Number(port) >= 1 && Number(port) <= 65535)) fail(`invalid port ${port} in registry "${registry}" (must be 1-65535)`);
  if (repository.length === 0) fail('missing repository name');
  if (repository.toLowerCase() !== repository) fail('repository name must be lowercase');
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT_RE.test(component)) {
      fail(component === '' ? 'empty path component in repository name' : `invalid repository path component "${component}"`);
    }
  }
  if (registry.length + 1 + repository.length > NAME_MAX) fail(`repository name longer than ${NAME_MAX} characters`);

  if (tag === undefined && digest === undefined) tag = DEFAULT_TAG;
  return new ParsedReference(registry, repository, tag, digest);
}
