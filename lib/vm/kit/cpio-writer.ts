import type { Writable } from 'node:stream';
import { once } from 'node:events';

/**
 * Writes the "newc" cpio format the kernel unpacks as an initramfs: a 110-byte ASCII header
 * of hex fields, the NUL-terminated name, the data, each padded to 4 bytes. Small enough to
 * write by hand rather than depend on the `cpio` tool.
 */
export class CpioWriter {
  private ino = 1;

  constructor(private readonly out: Writable) {}

  private async write(buf: Buffer): Promise<void> {
    if (!this.out.write(buf)) await once(this.out, 'drain');
  }

  private header(name: string, mode: number, size: number, rdev: [number, number] = [0, 0]): Buffer {
    const nameBuf = Buffer.from(name + '\0');
    const fields = [this.ino++, mode, 0, 0, 1, 0, size, 0, 0, rdev[0], rdev[1], nameBuf.length, 0];
    const head = '070701' + fields.map((f) => f.toString(16).padStart(8, '0')).join('');
    const pad = (4 - ((110 + nameBuf.length) % 4)) % 4;
    return Buffer.concat([Buffer.from(head, 'ascii'), nameBuf, Buffer.alloc(pad)]);
  }

  private async entry(name: string, mode: number, data: Buffer): Promise<void> {
    await this.write(this.header(name, mode, data.length));
    await this.write(data);
    const pad = (4 - (data.length % 4)) % 4;
    if (pad) await this.write(Buffer.alloc(pad));
  }

  async dir(name: string, perm = 0o755): Promise<void> {
    await this.entry(name, 0o040000 | perm, Buffer.alloc(0));
  }

  async file(name: string, data: Buffer, perm = 0o644): Promise<void> {
    await this.entry(name, 0o100000 | perm, data);
  }

  async symlink(name: string, target: string): Promise<void> {
    await this.entry(name, 0o120777, Buffer.from(target));
  }

  /** A character device node, e.g. /dev/console so init has a stdout before devtmpfs is up. */
  async chardev(name: string, major: number, minor: number, perm = 0o600): Promise<void> {
    await this.write(this.header(name, 0o020000 | perm, 0, [major, minor]));
  }

  /** Writes the trailer record; the caller ends the stream. */
  async finish(): Promise<void> {
    await this.entry('TRAILER!!!', 0, Buffer.alloc(0));
  }
}
