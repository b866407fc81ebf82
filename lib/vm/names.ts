import { posix } from 'node:path';
import { InvalidArgumentError } from '../errors.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** Sandbox and volume names are local handles; they never become host paths (rows use UUIDs). */
export function validateName(kind: 'sandbox' | 'volume', name: string): string {
  if (!NAME.test(name)) {
    throw new InvalidArgumentError(`invalid ${kind} name "${name}": use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 63 characters`);
  }
  return name;
}

const MOUNT_CHARS = /^[A-Za-z0-9._/-]+$/;
const RESERVED = ['/proc', '/sys', '/dev'];

/** A mount path inside the sandbox: absolute, normalised, plain characters, not `/` or a kernel filesystem. */
export function validateMountPath(path: string): string {
  const bad = (why: string) => new InvalidArgumentError(`invalid mount path "${path}": ${why}`);
  if (!path.startsWith('/')) throw bad('it must be absolute');
  if (!MOUNT_CHARS.test(path)) throw bad("use letters, digits, '.', '_', '-' and '/'");
  if (path.split('/').some((c) => c === '..' || c === '.')) throw bad("'.' and '..' are not allowed");
  const norm = posix.normalize(path).replace(/\/+$/, '');
  if (norm === '') throw bad('the root cannot be a volume');
  if (RESERVED.some((r) => norm === r || norm.startsWith(r + '/'))) throw bad(`${norm} belongs to the kernel`);
  return norm;
}

export interface VolumeMountSpec {
  volume: string;
  mountPath: string;
  readOnly: boolean;
}

/** Parses `NAME:/path[:ro|:rw]`, the form `--volume` takes (as docker's `-v`). */
export function parseVolumeSpec(spec: string): VolumeMountSpec {
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3) {
    throw new InvalidArgumentError(`invalid volume "${spec}": expected NAME:/path or NAME:/path:ro`);
  }
  const [volume, mountPath, mode] = parts as [string, string, string | undefined];
  if (mode !== undefined && mode !== 'ro' && mode !== 'rw') {
    throw new InvalidArgumentError(`invalid volume "${spec}": the mode must be ro or rw, not "${mode}"`);
  }
  return { volume: validateName('volume', volume), mountPath: validateMountPath(mountPath), readOnly: mode === 'ro' };
}

const SIZE = /^(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?$/i;

/** Parses sizes such as `1G`, `512M`, `1.5GiB`, `1048576` (binary units, as dd and qemu-img read them). */
export function parseSize(s: string): number {
  const m = SIZE.exec(s.trim());
  if (!m) throw new InvalidArgumentError(`invalid size "${s}": use a number with K, M, G or T (e.g. 1G)`);
  const unit = (m[2] ?? 'B').toUpperCase()[0]!;
  const mult = { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[unit] ?? 1;
  return Math.floor(Number(m[1]) * mult);
}
