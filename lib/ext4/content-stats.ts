/** Tallies a root filesystem stream and turns the tally into an ext4 size and inode count. */
import type { TarHeader } from '../layers/types.js';

const BLOCK = 4096;
const INODE_SIZE = 256;
/** xattr bytes that fit inside a 256-byte inode; more need an extra block. */
const INLINE_XATTR = 96;
const MiB = 1024 * 1024;

const blocks = (bytes: number): number => Math.ceil(bytes / BLOCK);

export class ContentStats {
  /** Bytes of regular-file content. */
  contentBytes = 0;
  entries = 0;
  /** Entries that need an inode (hardlinks share one). */
  inodes = 0;
  directories = 0;
  /** Blocks needed by data, long symlinks, extent trees and external xattr blocks. */
  dataBlocks = 0;
  /** Bytes of directory entries, to size directories beyond their first block. */
  direntBytes = 0;
  root?: TarHeader;

  add(h: TarHeader): void {
    this.entries++;
    if (h.name === '.' || h.name === '') {
      this.root = h;
      return;
    }
    this.direntBytes += 8 + Math.ceil(Buffer.byteLength(h.name.slice(h.name.lastIndexOf('/') + 1)) / 4) * 4;
    if (h.type === 'link') return;
    this.inodes++;
    if (h.type === 'file') {
      this.contentBytes += h.size;
      // Data blocks plus an extent-tree block for every ~32 MiB (fragmentation allowance).
      this.dataBlocks += blocks(h.size) + Math.floor(h.size / (32 * MiB));
    } else if (h.type === 'directory') {
      this.directories++;
      this.dataBlocks += 1;
    } else if (h.type === 'symlink' && Buffer.byteLength(h.linkname ?? '') >= 60) {
      this.dataBlocks += 1; // short targets live in the inode
    }
    if (h.xattrs) {
      let bytes = 0;
      for (const [k, v] of h.xattrs) bytes += 16 + Math.ceil((k.length + v.length) / 4) * 4;
      if (bytes > INLINE_XATTR) this.dataBlocks += blocks(bytes);
    }
  }

  /** Inode count to ask mke2fs for: everything present plus room to grow. */
  inodeCount(headroom: number): number {
    return Math.max(16384, Math.ceil((this.inodes + 64) * (1 + Math.max(headroom, 0.25))));
  }

  /** Filesystem size in bytes (a whole number of MiB) for this content plus `headroom`. */
  fsSize(headroom: number, minSize: number, grow = 1): number {
    const inodes = this.inodeCount(headroom) * grow;
    const dirBlocks = blocks(this.direntBytes * 1.5);
    const used = (this.dataBlocks + dirBlocks) * BLOCK;
    let size = used * (1 + headroom) * grow + inodes * INODE_SIZE;
    // Group descriptors, bitmaps, reserved GDT blocks for online resize, lost+found: a few percent.
    size = size * 1.03 + 8 * MiB;
    size += journalBytes(size);
    size = Math.max(size, minSize);
    return Math.ceil(size / MiB) * MiB;
  }
}

/** The journal mke2fs picks by filesystem size (ext2fs_default_journal_size, e2fsprogs 1.47), rounded up. */
function journalBytes(size: number): number {
  const fsBlocks = size / BLOCK;
  if (fsBlocks < 2048) return 0;
  if (fsBlocks < 32768) return 4 * MiB;
  if (fsBlocks < 256 * 1024) return 16 * MiB;
  if (fsBlocks < 512 * 1024) return 32 * MiB;
  if (fsBlocks < 4096 * 1024) return 64 * MiB;
  if (fsBlocks < 8192 * 1024) return 128 * MiB;
  if (fsBlocks < 16384 * 1024) return 256 * MiB;
  if (fsBlocks < 32768 * 1024) return 512 * MiB;
  return 1024 * MiB;
}
