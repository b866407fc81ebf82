import type { ExecResult } from './engine.js';
import type { SandboxInfo } from './sandbox-info.js';
import type { ExecOptions, VmManager } from './vm-manager.js';

/** What `Sandbox.run` collects: the exit status and the whole output as text. */
export interface RunResult extends ExecResult {
  stdout: string;
  stderr: string;
}

/**
 * A handle on one sandbox for harness code: one `await` per step, and
 * `await using sb = await vms.launch(…)` destroys it when the scope ends.
 */
export class Sandbox implements AsyncDisposable {
  constructor(
    private readonly vms: VmManager,
    readonly name: string,
    private readonly user: string,
  ) {}

  info(): Promise<SandboxInfo> {
    return this.vms.inspect(this.name, { user: this.user });
  }

  /** Runs a command, streaming output to the callbacks in `opts`. */
  exec(argv: string[], opts: Omit<ExecOptions, 'user'> = {}): Promise<ExecResult> {
    return this.vms.exec(this.name, argv, { ...opts, user: this.user });
  }

  /** Runs a command and collects its output. A non-zero exit code is a result, not an error. */
  async run(argv: string[], opts: Omit<ExecOptions, 'user' | 'onStdout' | 'onStderr'> = {}): Promise<RunResult> {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const r = await this.exec(argv, { ...opts, onStdout: (c) => out.push(c), onStderr: (c) => err.push(c) });
    return { ...r, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
  }

  async stop(opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    await this.vms.stop(this.name, { ...opts, user: this.user });
  }

  async start(opts: { signal?: AbortSignal } = {}): Promise<void> {
    await this.vms.start(this.name, { ...opts, user: this.user });
  }

  destroy(): Promise<void> {
    return this.vms.destroy(this.name, { user: this.user });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy().catch((err: { code?: string }) => {
      if (err.code !== 'SANDBOX_NOT_FOUND') throw err;
    });
  }
}
