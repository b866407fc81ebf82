/** Pull-based reader over an async byte stream: exact reads for headers, bounded reads for bodies. */
export class ByteSource {
  private readonly it: AsyncIterator<unknown>;
  private buf: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(source: AsyncIterable<unknown>) {
    this.it = source[Symbol.asyncIterator]();
  }

  /** Ensures some bytes are buffered; false at end of stream. */
  private async fill(): Promise<boolean> {
    while (this.buf.length === 0 && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else this.buf = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    }
    return this.buf.length > 0;
  }

  /**
   * Reads exactly `n` bytes. Returns null when the stream ends before the first byte,
   * and a shorter buffer when it ends part way (the caller decides that is truncation).
   */
  async readExact(n: number): Promise<Buffer | null> {
    if (!(await this.fill())) return null;
    if (this.buf.length >= n) {
      const out = this.buf.subarray(0, n);
      this.buf = this.buf.subarray(n);
      return out;
    }
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n && (await this.fill())) {
      const take = Math.min(n - got, this.buf.length);
      parts.push(this.buf.subarray(0, take));
      this.buf = this.buf.subarray(take);
      got += take;
    }
    return Buffer.concat(parts, got);
  }

  /** Reads between 1 and `max` bytes without copying; null at end of stream. */
  async readSome(max: number): Promise<Buffer | null> {
    if (!(await this.fill())) return null;
    const take = Math.min(max, this.buf.length);
    const out = this.buf.subarray(0, take);
    this.buf = this.buf.subarray(take);
    return out;
  }

  /** Discards `n` bytes; returns how many could be discarded before the stream ended. */
  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0 && (await this.fill())) {
      const take = Math.min(left, this.buf.length);
      this.buf = this.buf.subarray(take);
      left -= take;
    }
    return n - left;
  }

  /** Reads to the end (so whoever hashes the stream sees every byte). */
  async drain(): Promise<void> {
    while (await this.fill()) this.buf = Buffer.alloc(0);
  }

  /** Stops the underlying stream early (destroys it). */
  async close(): Promise<void> {
    if (!this.ended) {
      this.ended = true;
      await this.it.return?.();
    }
  }
}
