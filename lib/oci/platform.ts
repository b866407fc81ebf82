/**
 * Platforms (`linux/arm64/v8`): parsing, the host's own, and the matching used to pick one
 * manifest out of an image index. Normalisation follows containerd's, so `aarch64`,
 * `arm64` and `arm64/v8` are one platform.
 */
import { arch as osArch, endianness } from 'node:os';
import { InvalidArgumentError } from '../errors.js';
import type { Platform } from './types.js';

/** A platform component is stored and later parsed back, so it must be one plain token. */
const NAME_RE = /^[A-Za-z0-9_.-]+$/;

/** Why `value` is not a usable os/architecture/variant, or undefined if it is. */
function componentProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value === '') return 'empty component';
  if (value === '.' || value === '..') return `bad component ${JSON.stringify(value)}`;
  if (!NAME_RE.test(value)) return `bad component ${JSON.stringify(value)} (allowed: A-Z a-z 0-9 . _ -)`;
  return undefined;
}

/**
 * Why a platform (e.g. one an image declares about itself) cannot be used or stored, or
 * undefined if every component is a plain token.
 */
export function platformProblem(p: Platform): string | undefined {
  return componentProblem(p.os) ?? componentProblem(p.architecture) ?? (p.variant === undefined ? undefined : componentProblem(p.variant));
}

/** Canonical architecture and variant, e.g. (`aarch64`, ``) → (`arm64`, `v8`). */
function normaliseArch(architecture: string, variant: string | undefined): { architecture: string; variant?: string } {
  let a = architecture.toLowerCase();
  let v = variant?.toLowerCase() || undefined;
  switch (a) {
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      a = 'amd64';
      // amd64/v1 is plain amd64.
      if (v === 'v1') v = undefined;
      break;
    case 'i386':
    case 'i686':
    case '386':
      a = '386';
      break;
    case 'aarch64':
    case 'arm64':
      a = 'arm64';
      // An arm64 image without a variant is v8; v8.0 and 8 spell the same thing.
      if (v === undefined || v === '8' || v === 'v8.0') v = 'v8';
      else if (v === '9' || v === '9.0' || v === 'v9.0') v = 'v9';
      break;
    case 'armhf':
      a = 'arm';
      v = 'v7';
      break;
    case 'armel':
      a = 'arm';
      v = 'v6';
      break;
    case 'arm':
      if (v === undefined || v === '7') v = 'v7';
      else if (v === '5' || v === '6' || v === '8') v = `v${v}`;
      break;
    default:
      break;
  }
  return v === undefined ? { architecture: a } : { architecture: a, variant: v };
}

/** Normalises os, architecture and variant spellings (containerd rules). */
export function normalisePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase() === 'macos' ? 'darwin' : p.os.toLowerCase();
  return { os, ...normaliseArch(p.architecture, p.variant) };
}

/** `linux/arm64/v8`, `linux/amd64`, or `amd64` (os defaults to linux); returns the normalised platform. */
export function parsePlatform(s: string): Platform {
  const bad = (why: string): never => {
    throw new InvalidArgumentError(`invalid platform ${JSON.stringify(s)}: ${why}`);
  };
  if (typeof s !== 'string') bad('expected os/arch[/variant]');
  const parts = s.trim().split('/');
  if (parts.length > 3 || parts.some((p) => p === '')) bad('expected os/arch[/variant]');
  for (const p of parts) {
    const why = componentProblem(p);
    if (why) bad(why);
  }
  if (parts.length === 1) return normalisePlatform({ os: 'linux', architecture: parts[0]! });
  return normalisePlatform({ os: parts[0]!, architecture: parts[1]!, variant: parts[2] });
}

/** `os/arch[/variant]`, e.g. `linux/arm64/v8`. */
export function formatPlatform(p: Platform): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/** OCI architecture of a Node `process.arch` value. */
function ociArch(nodeArch: string): { architecture: string; variant?: string } {
  switch (nodeArch) {
    case 'x64':
      return { architecture: 'amd64' };
    case 'arm64':
      return { architecture: 'arm64', variant: 'v8' };
    case 'arm': {
      const v = (process.config.variables as { arm_version?: string }).arm_version;
      return { architecture: 'arm', variant: v ? `v${v}` : 'v7' };
    }
    case 'ia32':
      return { architecture: '386' };
    case 'ppc64':
      return { architecture: endianness() === 'LE' ? 'ppc64le' : 'ppc64' };
    default:
      // s390x, riscv64, loong64, mips64el, ppc… are spelled the same in both worlds.
      return { architecture: nodeArch };
  }
}

/** The platform of images this host runs: always Linux (they boot as Linux VMs) on the host's CPU. */
export function hostPlatform(): Platform {
  return { os: 'linux', ...ociArch(osArch()) };
}

/** True if an image built for `have` is exactly the `want` platform (after normalisation). */
export function platformEquals(want: Platform, have: Platform): boolean {
  const w = normalisePlatform(want);
  const h = normalisePlatform(have);
  return w.os === h.os && w.architecture === h.architecture && (w.variant ?? '') === (h.variant ?? '');
}

/**
 * How well `have` serves `want`: 0 is an exact match, higher is a worse but usable fallback
 * (an older ARM variant, or any variant when none was asked for), undefined is unusable.
 */
export function platformScore(want: Platform, have: Platform): number | undefined {
  const w = normalisePlatform(want);
  const h = normalisePlatform(have);
  if (w.os !== h.os || w.architecture !== h.architecture) return undefined;
  const wv = w.variant ?? '';
  const hv = h.variant ?? '';
  if (wv === hv) return 0;
  // An image with no variant (amd64) or a request with none accepts the other.
  if (hv === '' || wv === '') return 1;
  // 32-bit ARM CPUs run code built for older variants (a v7 CPU runs v6 and v5).
  if (w.architecture === 'arm') {
    const wn = Number(wv.slice(1));
    const hn = Number(hv.slice(1));
    if (Number.isInteger(wn) && Number.isInteger(hn) && hn < wn) return 1 + (wn - hn);
  }
  return undefined;
}

/** True if `have` is usable for `want` (exactly or as a compatible fallback). */
export function platformMatches(want: Platform, have: Platform): boolean {
  return platformScore(want, have) !== undefined;
}

/** Index of the best entry for `want` among `candidates`, or -1 if none fits. Ties keep index order. */
export function selectPlatform(want: Platform, candidates: readonly Platform[]): number {
  let best = -1;
  let bestScore = Infinity;
  candidates.forEach((c, i) => {
    const s = platformScore(want, c);
    if (s !== undefined && s < bestScore) {
      best = i;
      bestScore = s;
    }
  });
  return best;
}
