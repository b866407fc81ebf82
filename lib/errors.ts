/**
 * Typed errors with stable `code`s. The CLI maps `kind` to exit codes (user → 1,
 * internal → 2) and a future HTTP server maps it to statuses, so every front door
 * reports the same failure the same way.
 */

/** Whether an error is the caller's to fix (bad input, missing thing) or ours. */
export type ErrorKind = 'user' | 'internal';

/** Base class of every error the library throws on purpose. */
export class BhattiError extends Error {
  /** Stable machine-readable identifier, e.g. `IMAGE_NOT_FOUND`. */
  readonly code: string;
  readonly kind: ErrorKind;
  constructor(code: string, message: string, options?: { cause?: unknown; kind?: ErrorKind }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.kind = options?.kind ?? 'user';
  }
}

/** A value given by the caller is malformed (a reference, a name, a platform, a size). */
export class InvalidArgumentError extends BhattiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('INVALID_ARGUMENT', message, options);
  }
}

/** An image reference cannot be parsed. */
export class InvalidReferenceError extends BhattiError {
  constructor(readonly reference: string, reason: string) {
    super('INVALID_REFERENCE', `invalid image reference "${reference}": ${reason}`);
  }
}

/** No image of that name is visible to the caller. */
export class ImageNotFoundError extends BhattiError {
  constructor(readonly imageName: string) {
    super('IMAGE_NOT_FOUND', `image "${imageName}" not found`);
  }
}

/** The caller may see the thing but not change it (e.g. deleting a system image as a user). */
export class PermissionDeniedError extends BhattiError {
  constructor(message: string) {
    super('PERMISSION_DENIED', message);
  }
}

/** The caller already has an image of that name. */
export class ImageExistsError extends BhattiError {
  constructor(readonly imageName: string, detail = '') {
    super('IMAGE_EXISTS', `image name "${imageName}" is already taken${detail}; pass --force to replace it`);
  }
}

/** The image backs sandboxes (their copy-on-write views depend on its file). */
export class ImageInUseError extends BhattiError {
  constructor(readonly imageName: string, readonly sandboxes: string[]) {
    super('IMAGE_IN_USE', `image "${imageName}" is used by sandbox${sandboxes.length === 1 ? '' : 'es'} ${sandboxes.join(', ')}; destroy ${sandboxes.length === 1 ? 'it' : 'them'} first`);
  }
}

/** No sandbox of that name is visible to the caller. */
export class SandboxNotFoundError extends BhattiError {
  constructor(readonly sandboxName: string) {
    super('SANDBOX_NOT_FOUND', `sandbox "${sandboxName}" not found`);
  }
}

/** The caller already has a sandbox of that name. */
export class SandboxExistsError extends BhattiError {
  constructor(readonly sandboxName: string) {
    super('SANDBOX_EXISTS', `sandbox name "${sandboxName}" is already in use`);
  }
}

/** The sandbox is not in the state the operation needs (e.g. exec on a stopped sandbox). */
export class SandboxStateError extends BhattiError {
  constructor(readonly sandboxName: string, message: string) {
    super('SANDBOX_STATE', message);
  }
}

/** No volume of that name is visible to the caller. */
export class VolumeNotFoundError extends BhattiError {
  constructor(readonly volumeName: string) {
    super('VOLUME_NOT_FOUND', `volume "${volumeName}" not found`);
  }
}

/** The caller already has a volume of that name. */
export class VolumeExistsError extends BhattiError {
  constructor(readonly volumeName: string) {
    super('VOLUME_EXISTS', `volume name "${volumeName}" is already in use`);
  }
}

/** The volume is attached in a way that forbids the operation. */
export class VolumeInUseError extends BhattiError {
  constructor(readonly volumeName: string, message: string) {
    super('VOLUME_IN_USE', message);
  }
}

/** The registry has no such repository, tag or digest. */
export class ManifestUnknownError extends BhattiError {
  constructor(readonly reference: string, detail = '') {
    super('MANIFEST_UNKNOWN', `image "${reference}" not found in the registry${detail}`);
  }
}

/** The registry wants credentials we do not have, or refused the ones we gave. */
export class RegistryAuthError extends BhattiError {
  constructor(readonly registry: string, message: string) {
    super('REGISTRY_AUTH', message);
  }
}

/** The registry has no blob of that digest in the repository. */
export class BlobUnknownError extends BhattiError {
  constructor(readonly digest: string, message: string) {
    super('BLOB_UNKNOWN', message);
  }
}

/** The merged filesystem of an image cannot be materialised (conflicting entries tar refuses). */
export class CorruptImageError extends BhattiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CORRUPT_IMAGE', message, options);
  }
}

/** The registry could not be reached, or answered in a way we cannot use. */
export class RegistryError extends BhattiError {
  constructor(readonly registry: string, message: string, options?: { cause?: unknown }) {
    super('REGISTRY_UNAVAILABLE', message, options);
  }
}

/** The image uses a format we do not handle (schema1, foreign layers, unknown media type). */
export class UnsupportedImageError extends BhattiError {
  constructor(message: string) {
    super('UNSUPPORTED_IMAGE', message);
  }
}

/** No manifest in an index matches the requested platform. */
export class PlatformNotFoundError extends BhattiError {
  constructor(readonly platform: string, available: string[]) {
    super(
      'PLATFORM_NOT_FOUND',
      `no image for platform ${platform}; the image has: ${available.join(', ') || 'none'} (choose one with --platform)`,
    );
  }
}

/** Content did not hash to the digest that named it. */
export class DigestMismatchError extends BhattiError {
  constructor(readonly expected: string, readonly actual: string, what: string) {
    super('DIGEST_MISMATCH', `${what} ${expected} failed verification: its content hashes to ${actual}`);
  }
}

/** A layer is not a readable (optionally compressed) tar, or was cut short. */
export class CorruptLayerError extends BhattiError {
  constructor(readonly digest: string, detail: string, options?: { cause?: unknown }) {
    super('CORRUPT_LAYER', `layer ${digest} is corrupt: ${detail}`, options);
  }
}

/** A layer entry would land outside the image root or through a symlink. */
export class UnsafeLayerEntryError extends BhattiError {
  constructor(readonly digest: string, readonly entryPath: string, reason: string) {
    super('UNSAFE_LAYER_ENTRY', `layer ${digest}: entry "${entryPath}" ${reason}`);
  }
}

/** A blob transfer kept breaking off or delivered the wrong number of bytes. */
export class TransferError extends BhattiError {
  constructor(readonly digest: string, message: string, options?: { cause?: unknown }) {
    super('TRANSFER_FAILED', message, options);
  }
}

/** The operation was cancelled through its AbortSignal (Ctrl+C in the CLI). */
export class AbortedError extends BhattiError {
  constructor(message = 'operation aborted') {
    super('ABORTED', message);
  }
}

/** The disk holding the data dir ran out of space. */
export class DiskFullError extends BhattiError {
  constructor(readonly path: string, options?: { cause?: unknown }) {
    super('DISK_FULL', `no space left on the device holding ${path}`, options);
  }
}

/** A host tool the library needs (mke2fs, tar) is missing or failed. */
export class ToolError extends BhattiError {
  constructor(readonly tool: string, message: string, options?: { cause?: unknown; kind?: ErrorKind }) {
    super('TOOL_FAILED', message, { kind: 'internal', ...options });
  }
}

/** The guest agent (qemu-ga) could not be reached, timed out, or answered with an error. */
export class AgentError extends BhattiError {
  constructor(message: string, options?: { cause?: unknown; kind?: ErrorKind }) {
    super('AGENT_ERROR', message, { kind: 'internal', ...options });
  }
}

/** Turns a thrown value into a BhattiError, keeping typed ones and classifying common system errors. */
export function toBhattiError(err: unknown, context?: string): BhattiError {
  if (err instanceof BhattiError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  if (e && (e.name === 'AbortError' || e.code === 'ABORT_ERR')) return new AbortedError();
  if (e?.code === 'ENOSPC' || e?.code === 'SQLITE_FULL') return new DiskFullError(context ?? e.path ?? 'the data dir', { cause: err });
  const message = e?.message ?? String(err);
  return new BhattiError('INTERNAL', context ? `${context}: ${message}` : message, { cause: err, kind: 'internal' });
}

/** Throws AbortedError if the signal is aborted. */
export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new AbortedError();
}
