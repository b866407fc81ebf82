import { randomInt } from 'node:crypto';
import { createConnection, type Socket } from 'node:net';
import { AbortedError, AgentError } from '../../errors.js';

/** Options every agent call takes. */
export interface CallOptions {
  signal?: AbortSignal;
  /** Per-call deadline; on expiry the connection is dropped (the agent may be wedged). */
  timeoutMs?: number;
}

export interface GuestExecArgs {
  path: string;
  arg?: string[];
  /** Full environment of the child (`K=V`); omitted → the agent's own. */
  env?: string[];
  /** Bytes for the child's stdin (sent base64 in one message, so keep it small). */
  inputData?: Buffer;
  captureOutput?: boolean;
}

export interface GuestExecStatus {
  exited: boolean;
  exitcode?: number;
  signal?: number;
  outData?: Buffer;
  errData?: Buffer;
  outTruncated?: boolean;
  errTruncated?: boolean;
}

export interface GuestFileRead {
  data: Buffer;
  count: number;
  eof: boolean;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  /** Set when the caller gave up (abort): the reply is still consumed, in order, then dropped. */
  discarded: boolean;
  /** guest-sync: lines are skipped until a return with this id arrives. */
  syncId?: number;
  command: string;
  /** The request's bytes; written only when it reaches the head of the queue. */
  payload: Buffer;
  written: boolean;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * A client for qemu-ga's JSON protocol over QEMU's unix socket chardev: one JSON object per
 * line each way, replies in request order and without ids. So requests are queued FIFO over one
 * connection and matched to replies by position; `guest-sync` with a random id re-aligns the
 * stream after a reconnect, discarding replies meant for an earlier client.
 */
export class QgaClient {
  private buf = '';
  private readonly queue: Pending[] = [];
  private closedError: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly socketPath: string,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new AgentError(`guest agent socket ${socketPath} failed: ${err.message}`, { cause: err })));
    socket.on('close', () => this.fail(new AgentError(`guest agent connection ${socketPath} closed (did the VM stop?)`)));
  }

  /** Opens the socket (no sync); use `connect` unless you drive `sync` yourself. */
  static open(socketPath: string, opts: CallOptions = {}): Promise<QgaClient> {
    return new Promise((resolve, reject) => {
      if (opts.signal?.aborted) return reject(new AbortedError());
      const socket = createConnection(socketPath);
      const timer = setTimeout(() => finish(new AgentError(`timed out connecting to guest agent socket ${socketPath}`)), opts.timeoutMs ?? 5000);
      const onAbort = (): void => finish(new AbortedError());
      const finish = (err?: Error): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        socket.removeAllListeners('connect');
        socket.removeAllListeners('error');
        if (err) {
          socket.destroy();
          reject(err);
        } else resolve(new QgaClient(socket, socketPath));
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      socket.once('connect', () => finish());
      socket.once('error', (e: NodeJS.ErrnoException) =>
        finish(new AgentError(`cannot connect to guest agent socket ${socketPath}: ${e.code ?? e.message}`, { cause: e })),
      );
    });
  }

  /** Opens the socket and syncs with the agent. */
  static async connect(socketPath: string, opts: CallOptions = {}): Promise<QgaClient> {
    const client = await QgaClient.open(socketPath, opts);
    try {
      await client.sync(opts);
      return client;
    } catch (err) {
      client.close();
      throw err;
    }
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  close(): void {
    if (!this.closedError) this.closedError = new AgentError(`guest agent connection ${this.socketPath} was closed`);
    this.socket.destroy();
    this.rejectAll(this.closedError);
  }

  /** Lets the process exit while this connection is idle-open. */
  unref(): void {
    this.socket.unref();
  }

  ref(): void {
    this.socket.ref();
  }

  private fail(err: Error): void {
    if (!this.closedError) this.closedError = err;
    this.socket.destroy();
    this.rejectAll(this.closedError);
  }

  private rejectAll(err: Error): void {
    for (const p of this.queue.splice(0)) if (!p.discarded) p.reject(err);
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\xff/g, '').trim();
      this.buf = this.buf.slice(nl + 1);
      if (line) this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let msg: { return?: unknown; error?: { class?: string; desc?: string } };
    try {
      msg = JSON.parse(line);
    } catch {
      return; // garbage from a previous client's half-written request
    }
    const head = this.queue[0];
    if (!head || !head.written) return; // a stale reply nobody waits for
    if (head.syncId !== undefined) {
      if (msg.return !== head.syncId) return; // not ours: skip until our id comes back
      this.queue.shift();
      if (!head.discarded) head.resolve(msg.return);
      this.writeNext();
      return;
    }
    this.queue.shift();
    if (!head.discarded) {
      if (msg.error) head.reject(new AgentError(`guest agent ${head.command} failed: ${msg.error.desc ?? msg.error.class ?? 'unknown error'}`));
      else head.resolve(msg.return);
    }
    this.writeNext();
  }

  /**
   * One request on the wire at a time: qemu-ga (7.2, over virtio-serial) loses requests when
   * many arrive in one burst, so requests are not pipelined. Given-up requests that were never
   * sent are dropped here instead of being sent.
   */
  private writeNext(): void {
    while (this.queue.length > 0 && !this.queue[0]!.written && this.queue[0]!.discarded) this.queue.shift();
    const head = this.queue[0];
    if (!head || head.written || this.closedError) return;
    head.written = true;
    this.socket.write(head.payload);
  }

  private send(command: string, args: Record<string, unknown> | undefined, opts: CallOptions, syncId?: number): Promise<unknown> {
    if (this.closedError) return Promise.reject(this.closedError);
    if (opts.signal?.aborted) return Promise.reject(new AbortedError());
    return new Promise((resolve, reject) => {
      const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
      const cleanup = (): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      const msg: Record<string, unknown> = { execute: command };
      if (args) msg.arguments = args;
      // 0xFF makes the agent's JSON parser drop any half-received request before a sync.
      const prefix = syncId !== undefined ? '\xff' : '';
      const entry: Pending = {
        command,
        discarded: false,
        syncId,
        payload: Buffer.concat([Buffer.from(prefix, 'latin1'), Buffer.from(JSON.stringify(msg) + '\n')]),
        written: false,
        resolve: (v) => {
          cleanup();
          resolve(v);
        },
        reject: (e) => {
          cleanup();
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        if (syncId !== undefined) {
          // A sync that is not answered is simply superseded by the next one; the stream stays usable.
          entry.discarded = true;
          cleanup();
          reject(new AgentError(`guest agent did not answer guest-sync within ${timeoutMs} ms`));
          return;
        }
        cleanup();
        if (!entry.written) {
          // Never sent (others were ahead of it): give up on it alone; the connection is fine.
          entry.discarded = true;
          reject(new AgentError(`guest agent busy: ${command} could not be sent within ${timeoutMs} ms`));
          return;
        }
        reject(new AgentError(`guest agent did not answer ${command} within ${timeoutMs} ms`));
        this.fail(new AgentError(`guest agent connection dropped after ${command} timed out`));
      }, timeoutMs);
      const onAbort = (): void => {
        entry.discarded = true;
        cleanup();
        reject(new AbortedError());
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(entry);
      this.writeNext();
    });
  }

  /** Generic command call. */
  call<T = unknown>(command: string, args?: Record<string, unknown>, opts: CallOptions = {}): Promise<T> {
    return this.send(command, args, opts) as Promise<T>;
  }

  /** guest-sync with a random id; replies that arrive before ours are discarded. */
  async sync(opts: CallOptions = {}): Promise<void> {
    // A sync that timed out stays queued (discarded): its reply, if it ever comes, is skipped in order.
    const id = randomInt(1, 2 ** 31 - 1);
    // Earlier discarded syncs whose replies never came would block this one; drop them.
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const p = this.queue[i]!;
      if (p.discarded && p.syncId !== undefined) this.queue.splice(i, 1);
    }
    const got = await this.send('guest-sync', { id }, { timeoutMs: 5000, ...opts }, id);
    if (got !== id) throw new AgentError(`guest-sync returned ${String(got)}, expected ${id}`);
  }

  async ping(opts: CallOptions = {}): Promise<void> {
    await this.call('guest-ping', undefined, opts);
  }

  async exec(args: GuestExecArgs, opts: CallOptions = {}): Promise<number> {
    const a: Record<string, unknown> = { path: args.path, 'capture-output': args.captureOutput ?? false };
    if (args.arg) a.arg = args.arg;
    if (args.env) a.env = args.env;
    if (args.inputData) a['input-data'] = args.inputData.toString('base64');
    const r = await this.call<{ pid: number }>('guest-exec', a, opts);
    // A reply of another shape means the stream is out of step (e.g. a stale reply); never poll `undefined`.
    if (typeof r?.pid !== 'number') throw new AgentError(`guest-exec answered ${JSON.stringify(r)}, not a pid`);
    return r.pid;
  }

  async execStatus(pid: number, opts: CallOptions = {}): Promise<GuestExecStatus> {
    const r = await this.call<{
      exited: boolean;
      exitcode?: number;
      signal?: number;
      'out-data'?: string;
      'err-data'?: string;
      'out-truncated'?: boolean;
      'err-truncated'?: boolean;
    }>('guest-exec-status', { pid }, opts);
    return {
      exited: r.exited,
      exitcode: r.exitcode,
      signal: r.signal,
      outData: r['out-data'] !== undefined ? Buffer.from(r['out-data'], 'base64') : undefined,
      errData: r['err-data'] !== undefined ? Buffer.from(r['err-data'], 'base64') : undefined,
      outTruncated: r['out-truncated'],
      errTruncated: r['err-truncated'],
    };
  }

  /** guest-file-open; `mode` is an fopen mode ("r", "w", "w+", "a", …). Returns a handle. */
  fileOpen(path: string, mode = 'r', opts: CallOptions = {}): Promise<number> {
    return this.call<number>('guest-file-open', { path, mode }, opts);
  }

  async fileRead(handle: number, count: number, opts: CallOptions = {}): Promise<GuestFileRead> {
    const r = await this.call<{ count: number; 'buf-b64': string; eof: boolean }>('guest-file-read', { handle, count }, opts);
    return { data: Buffer.from(r['buf-b64'], 'base64'), count: r.count, eof: r.eof };
  }

  async fileWrite(handle: number, data: Buffer, opts: CallOptions = {}): Promise<number> {
    const r = await this.call<{ count: number }>('guest-file-write', { handle, 'buf-b64': data.toString('base64') }, opts);
    return r.count;
  }

  /** Seeks (whence 0 = set, 1 = cur, 2 = end); also clears a sticky EOF so later appends are readable. */
  async fileSeek(handle: number, offset: number, whence: 0 | 1 | 2 = 0, opts: CallOptions = {}): Promise<number> {
    const r = await this.call<{ position: number }>('guest-file-seek', { handle, offset, whence }, opts);
    return r.position;
  }

  async fileClose(handle: number, opts: CallOptions = {}): Promise<void> {
    await this.call('guest-file-close', { handle }, opts);
  }

  /** Freezes all guest filesystems, or only `mountpoints`; returns how many were frozen. */
  fsfreezeFreeze(mountpoints?: string[], opts: CallOptions = {}): Promise<number> {
    return mountpoints
      ? this.call<number>('guest-fsfreeze-freeze-list', { mountpoints }, opts)
      : this.call<number>('guest-fsfreeze-freeze', undefined, opts);
  }

  fsfreezeThaw(opts: CallOptions = {}): Promise<number> {
    return this.call<number>('guest-fsfreeze-thaw', undefined, opts);
  }

  fsfreezeStatus(opts: CallOptions = {}): Promise<'thawed' | 'frozen'> {
    return this.call<'thawed' | 'frozen'>('guest-fsfreeze-status', undefined, opts);
  }

  /**
   * guest-shutdown sends no reply on success (the guest goes away), so this only writes the
   * request and waits briefly for an error reply; silence or a closed socket means it was taken.
   */
  async shutdown(mode: 'powerdown' | 'halt' | 'reboot' = 'powerdown', opts: CallOptions = {}): Promise<void> {
    try {
      await this.send('guest-shutdown', { mode }, { ...opts, timeoutMs: opts.timeoutMs ?? 1500 });
    } catch (err) {
      if (err instanceof AgentError && /did not answer|closed|dropped/.test(err.message)) return;
      throw err;
    } finally {
      this.close();
    }
  }
}
