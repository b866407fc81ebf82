/**
 * Merges image layers into one root filesystem stream with OCI whiteout semantics
 * (https://github.com/opencontainers/image-spec/blob/main/layer.md). Each layer is read once,
 * top (last) to bottom (first): an entry is emitted the first time its path is seen, unless an
 * upper layer deleted it, replaced it or replaced one of its ancestors with a non-directory.
 * Only small per-path metadata is kept in memory.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CorruptLayerError, DigestMismatchError, UnsafeLayerEntryError, throwIfAborted } from '../errors.js';
import { decompress } from './decompress.js';
import { ROOT, ancestorsOf, baseName, escapeText as q, joinPath, normalizeEntryPath, parentPath } from './paths.js';
import { readTar } from './tar-reader.js';
import { writeTar } from './tar-writer.js';
import type { EntryType, LayerInput, TarEntry, TarHeader } from './types.js';

export interface FlattenOptions {
  signal?: AbortSignal;
  /**
   * Private scratch directory. Files hidden by an upper layer are kept here until the end of
   * their layer, because a later hardlink in the same layer may still need their content.
   * Defaults to the OS temp dir.
   */
  tmpDir?: string;
}

/** How a path was settled, by the layer (index) that settled it. */
interface Decision {
  type: EntryType;
  layer: number;
}

/** Some emitted entry whose path runs through a given directory path. */
interface Passage {
  entry: string;
  digest: string;
}

/** What a path meant earlier in the current layer, for resolving hardlinks to it. */
type Seen =
  | { kind: 'emitted'; name: string } // its content is in the output under `name`
  | { kind: 'stashed'; header: TarHeader; file?: string } // hidden from the result, content kept aside
  | { kind: 'link'; target: string }
  | { kind: 'directory' }; // never a hardlink target

/** A hardlink waiting for its target, which lives in a lower layer. */
interface PendingLink {
  header: TarHeader;
  digest: string;
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/** Yields the merged root filesystem; regular files carry a `body` to consume before the next entry. */
export async function* flatten(layers: LayerInput[], opts: FlattenOptions = {}): AsyncGenerator<TarEntry> {
  const { signal } = opts;
  const decided = new Map<string, Decision>();
  const passages = new Map<string, Passage>();
  const deleted = new Set<string>();
  const opaque = new Set<string>();
  const pending = new Map<string, PendingLink[]>();
  let spoolDir: string | undefined;
  let spoolSeq = 0;

  const hiddenByWhiteout = (name: string): boolean => {
    if (deleted.has(name)) return true;
    if (name !== ROOT && opaque.has(ROOT)) return true;
    for (const a of ancestorsOf(name)) if (deleted.has(a) || opaque.has(a)) return true;
    return false;
  };

  /** Whether an entry of layer `li` is part of the result; throws for entries that would escape through a link. */
  const visible = (name: string, type: EntryType, li: number, digest: string): boolean => {
    if (hiddenByWhiteout(name)) return false;
    for (const a of ancestorsOf(name)) {
      const d = decided.get(a);
      if (d && d.type !== 'directory') {
        // Same layer: the layer itself puts a file under a symlink/file. Upper layer: the directory was replaced.
        if (d.layer === li) throw new UnsafeLayerEntryError(digest, q(name), `passes through ${describe(d.type)} "${q(a)}"`);
        return false;
      }
    }
    const d = decided.get(name);
    if (d && d.layer !== li) return false; // upper layers win (also for directory metadata)
    if (d) {
      // Within a layer the later entry wins, as in tar, except where tar would refuse it or
      // keep following the earlier symlink: say so here, naming the entry.
      const under = passages.get(name);
      if (d.type === 'directory' && type !== 'directory' && under) {
        throw new CorruptLayerError(digest, `entry "${q(name)}" is a directory holding "${q(under.entry)}" and then a ${describe(type)} in the same layer`);
      }
      if (d.type === 'symlink' && type === 'directory') {
        throw new UnsafeLayerEntryError(digest, q(name), 'is a symlink and then a directory in the same layer');
      }
      return true;
    }
    if (type !== 'directory') {
      const p = passages.get(name);
      if (p) throw new UnsafeLayerEntryError(p.digest, q(p.entry), `passes through ${describe(type)} "${q(name)}" of layer ${digest}`);
    }
    return true;
  };

  const decide = (name: string, type: EntryType, li: number, digest: string): void => {
    decided.set(name, { type, layer: li });
    const ancestors = ancestorsOf(name);
    for (let i = ancestors.length - 1; i >= 0; i--) {
      const a = ancestors[i]!;
      if (passages.has(a)) break; // its ancestors were recorded with it
      passages.set(a, { entry: name, digest });
    }
  };

  const linkTo = (p: PendingLink, target: string): TarEntry => ({
    header: { ...p.header, type: 'link', linkname: target, size: 0 },
  });

  /** Emits a hardlink now if its target is known in this layer, else waits for a lower layer. */
  function* resolveLink(p: PendingLink, target: string, seen: Map<string, Seen>): Generator<TarEntry> {
    let t = target;
    let s = seen.get(t);
    for (let hops = 0; s?.kind === 'link'; hops++) {
      if (hops > 64) throw new CorruptLayerError(p.digest, `hardlink "${q(p.header.name)}" is part of a loop`);
      t = s.target;
      s = seen.get(t);
    }
    // tar (and ext4) cannot hardlink a directory.
    if (s?.kind === 'directory') throw new CorruptLayerError(p.digest, `hardlink "${q(p.header.name)}" points to directory "${q(t)}"`);
    if (!s) {
      const list = pending.get(t);
      if (list) list.push(p);
      else pending.set(t, [p]);
      return;
    }
    if (s.kind === 'emitted') {
      yield linkTo(p, s.name);
      return;
    }
    // The target was replaced or deleted above, but the link keeps the content it had in this layer.
    seen.set(t, { kind: 'emitted', name: p.header.name });
    yield { header: { ...s.header, name: p.header.name }, body: stashedBody(s) };
  }

  const spool = async (body: Readable): Promise<string> => {
    spoolDir ??= await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'bhatti-flatten-'));
    const file = join(spoolDir, String(spoolSeq++));
    await pipeline(body, createWriteStream(file, { mode: 0o600 }), { signal });
    return file;
  };

  try {
    for (let li = layers.length - 1; li >= 0; li--) {
      throwIfAborted(signal);
      const layer = layers[li]!;
      const digest = layer.digest;
      const hash = createHash('sha256');
      const unpacked = decompress(await layer.open(signal), { digest, signal });
      const hashed = async function* (): AsyncGenerator<Buffer> {
        for await (const chunk of unpacked as AsyncIterable<Buffer>) {
          hash.update(chunk);
          yield chunk;
        }
      };
      const seen = new Map<string, Seen>();
      const newDeleted: string[] = [];
      const newOpaque: string[] = [];
      try {
        for await (const entry of readTar(hashed(), { digest, signal })) {
          const name = normalizeEntryPath(entry.header.name, digest);
          const base = baseName(name);
          if (base.startsWith(WHITEOUT)) {
            // Whiteouts act on lower layers only, so they are applied once this layer is done.
            if (base === OPAQUE) newOpaque.push(parentPath(name));
            else if (!base.startsWith(WHITEOUT + WHITEOUT)) newDeleted.push(joinPath(parentPath(name), base.slice(WHITEOUT.length)));
            continue;
          }
          const type = entry.header.type;
          if (name === ROOT && type !== 'directory') {
            throw new UnsafeLayerEntryError(digest, q(entry.header.name), 'replaces the image root with a non-directory');
          }
          const header: TarHeader = { ...entry.header, name };
          const shown = visible(name, type, li, digest);

          if (type === 'link') {
            const target = normalizeEntryPath(entry.header.linkname ?? '', digest);
            if (target === ROOT || target === name) {
              throw new CorruptLayerError(digest, `hardlink "${q(name)}" points to "${q(entry.header.linkname ?? '')}"`);
            }
            seen.set(name, { kind: 'link', target });
            if (shown) {
              decide(name, type, li, digest);
              yield* resolveLink({ header, digest }, target, seen);
            }
            // Links from upper layers that named this link now follow it to its target.
            const waiting = pending.get(name);
            if (waiting) {
              pending.delete(name);
              for (const p of waiting) yield* resolveLink(p, target, seen);
            }
            continue;
          }

          const waiting = pending.get(name);
          if (waiting) pending.delete(name);
          if (waiting && type === 'directory') {
            throw new CorruptLayerError(waiting[0]!.digest, `hardlink "${q(waiting[0]!.header.name)}" points to directory "${q(name)}"`);
          }
          if (shown) {
            decide(name, type, li, digest);
            yield { header, body: entry.body };
            seen.set(name, type === 'directory' ? { kind: 'directory' } : { kind: 'emitted', name });
            for (const p of waiting ?? []) yield linkTo(p, name);
          } else if (waiting) {
            // Hidden here, but links from upper layers still need this content: the first link gets it.
            const [first, ...others] = waiting;
            yield { header: { ...header, name: first!.header.name }, body: entry.body };
            seen.set(name, { kind: 'emitted', name: first!.header.name });
            for (const p of others) yield linkTo(p, first!.header.name);
          } else if (type === 'directory') {
            seen.set(name, { kind: 'directory' });
          } else {
            const file = type === 'file' && header.size > 0 && entry.body ? await spool(entry.body) : undefined;
            seen.set(name, { kind: 'stashed', header, file });
          }
        }
      } finally {
        if (spoolDir) {
          await rm(spoolDir, { recursive: true, force: true });
          spoolDir = undefined;
        }
      }
      const actual = `sha256:${hash.digest('hex')}`;
      if (layer.diffId !== undefined && layer.diffId !== actual) {
        throw new DigestMismatchError(layer.diffId, actual, `layer ${digest} uncompressed: diff_id`);
      }
      for (const p of newDeleted) deleted.add(p);
      for (const p of newOpaque) opaque.add(p);
    }
    for (const [target, list] of pending) {
      const p = list[0]!;
      throw new CorruptLayerError(p.digest, `hardlink "${q(p.header.name)}" points to "${q(target)}", which no layer contains`);
    }
  } finally {
    if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
  }
}

/** The merged root filesystem as one tar stream (pax where needed, xattrs kept). */
export function flattenToTar(layers: LayerInput[], opts: FlattenOptions = {}): Readable {
  return writeTar(flatten(layers, opts), { signal: opts.signal });
}

function describe(type: EntryType): string {
  return type === 'symlink' ? 'symlink' : `non-directory (${type})`;
}

function stashedBody(s: { header: TarHeader; file?: string }): Readable | undefined {
  if (s.header.type !== 'file') return undefined;
  return s.file ? createReadStream(s.file) : Readable.from([]);
}
