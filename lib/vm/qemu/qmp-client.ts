import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { AbortedError, ToolError } from '../../errors.js';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

/** Minimal QMP client: greeting, capabilities negotiation, id-matched commands, events. */
export class QmpClient extends EventEmitter {
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private closedError: Error | undefined;

  private constructor(private readonly socket: Socket, readonly socketPath: string) {
    super();
  }

  static connect(socketPath: string, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<QmpClient> {
    return new Promise((resolve, reject) => {
      if (opts.signal?.aborted) return reject(new AbortedError());
      const socket = createConnection(socketPath);
      const client = new QmpClient(socket, socketPath);
      socket.setEncoding('utf8');
      let greeted = false;
      const timer = setTimeout(() => done(new ToolError('qemu', `QMP socket ${socketPath} did not greet within ${opts.timeoutMs ?? 5000} ms`)), opts.timeoutMs ?? 5000);
      const onAbort = (): void => done(new AbortedError());
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const done = (err?: Error): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        if (err) {
          client.close();
          reject(err);
        } else resolve(client);
      };
      socket.on('data', (chunk: string) => {
        client.buf += chunk;
        let nl: number;
        while ((nl = client.buf.indexOf('\n')) >= 0) {
          const line = client.buf.slice(0, nl).trim();
          client.buf = client.buf.slice(nl + 1);
          if (!line) continue;
          let msg: Record<string, unknown>;
          try {
            msg = JSON.parse(line);
          } catch {
            continue;
          }
          if (!greeted && 'QMP' in msg) {
            greeted = true;
            client.execute('qmp_capabilities').then(() => done(), done);
            continue;
          }
          client.onMessage(msg);
        }
      });
      socket.on('error', (e) => {
        const err = new ToolError('qemu', `QMP socket ${socketPath}: ${e.message}`, { cause: e });
        if (!greeted) done(err);
        client.failAll(err);
      });
      socket.on('close', () => client.failAll(new ToolError('qemu', `QMP connection ${socketPath} closed (did QEMU exit?)`)));
    });
  }

  private onMessage(msg: Record<string, unknown>): void {
    if (typeof msg.event === 'string') {
      this.emit('event', msg as unknown as QmpEvent);
      return;
    }
    const id = String(msg.id);
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    const error = msg.error as { desc?: string } | undefined;
    if (error) p.reject(new ToolError('qemu', `QMP command failed: ${error.desc ?? 'unknown error'}`));
    else p.resolve(msg.return);
  }

  private failAll(err: Error): void {
    if (!this.closedError) this.closedError = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.emit('closed', err);
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = `b${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(JSON.stringify({ execute: command, arguments: args, id }) + '\n');
    });
  }

  close(): void {
    this.socket.destroy();
    this.failAll(new ToolError('qemu', `QMP connection ${this.socketPath} closed`));
  }
}
