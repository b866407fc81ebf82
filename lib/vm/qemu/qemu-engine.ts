import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, resolve as resolvePath } from 'node:path';
import { AbortedError, AgentError, BhattiError, InvalidArgumentError, ToolError, throwIfAborted } from '../../errors.js';
import { QgaClient } from '../agent/qga-client.js';
import type { Engine, ExecRequest, ExecResult, RunningInfo, SandboxSpec } from '../engine.js';
import { ensureBootKit, type BootKitStatus } from '../kit/boot-kit.js';
import { runCommand } from '../../util/run-command.js';
import { detectAccel, kvmDeviceUsable, type Accel } from './accel-probe.js';
import { guestExec } from './guest-exec.js';
import { processAlive, processCmdline, processStartTime, signalProcess, terminate, waitForExit } from '../../util/host-process.js';
import { buildQemuArgs, checkSocketPaths, sandboxPaths } from './qemu-args.js';
import { QmpClient, type QmpEvent } from './qmp-client.js';

export interface QemuEngineOptions {
  /** Directory of the boot kit (kernel + initrd); built there on first use. */
  kitDir: string;
  /** `auto` probes KVM once (cached in kitDir) and falls back to TCG. */
  accel?: 'auto' | 'kvm' | 'tcg';
  /** Defaults to qemu-system-<host arch> on PATH. */
  qemuBinary?: string;
  qemuImg?: string;
}

const DEFAULT_BOOT_TIMEOUT_MS = 60_000;
const DEFAULT_STOP_TIMEOUT_MS = 20_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The last lines of a console log, escape sequences stripped, joined to fit a one-line message. */
export async function consoleTail(path: string, lines = 10): Promise<string> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return '(no console output)';
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, 16 * 1024);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const text = buf
      .toString('utf8')
      // eslint-disable-next-line no-control-regex
      .replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1bc/g, '')
      .replace(/\r/g, '');
    const tail = text.split('\n').map((l) => l.trim()).filter(Boolean).slice(-lines);
    return tail.length ? tail.join(' | ') : '(no console output)';
  } finally {
    await fh.close();
  }
}

/** MemAvailable in MiB (synchronous: /proc/meminfo is tiny and this runs once per start). */
function hostMemAvailableMiB(): number {
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    return m ? Math.floor(Number(m[1]) / 1024) : Infinity;
  } catch {
    return Infinity;
  }
}

export class QemuEngine implements Engine {
  readonly name = 'qemu';
  private readonly opts: Required<Pick<QemuEngineOptions, 'kitDir' | 'accel'>> & QemuEngineOptions;
  private kit: BootKitStatus | undefined;
  private qemuVersion: string | undefined;
  private accel: Accel | undefined;
  /** One agent connection per socket, shared by concurrent calls (qemu-ga serves one client). */
  private readonly agents = new Map<string, { client: Promise<QgaClient>; refs: number }>();

  constructor(options: QemuEngineOptions) {
    this.opts = { accel: 'auto', ...options };
    if (!['auto', 'kvm', 'tcg'].includes(this.opts.accel)) throw new InvalidArgumentError(`unknown accelerator "${this.opts.accel}"`);
  }

  get qemuBinary(): string {
    if (this.opts.qemuBinary) return this.opts.qemuBinary;
    if (process.arch === 'x64') return 'qemu-system-x86_64';
    throw new ToolError('qemu', `host architecture ${process.arch} is not supported by the QEMU engine yet`);
  }

  async check(opts: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.qemuVersion) {
      const v = await runCommand(this.qemuBinary, ['--version'], { signal: opts.signal, pkg: 'qemu-system-x86' });
      this.qemuVersion = v.stdout.toString().split('\n')[0]!.trim();
      await runCommand(this.opts.qemuImg ?? 'qemu-img', ['--version'], { signal: opts.signal, pkg: 'qemu-utils' });
    }
    if (!this.kit) this.kit = await ensureBootKit(this.opts.kitDir, opts);
  }

  /** The accelerator `start` will use (probing KVM on first call when `accel` is `auto`). */
  async resolveAccel(opts: { signal?: AbortSignal } = {}): Promise<Accel> {
    if (this.accel) return this.accel;
    await this.check(opts);
    if (this.opts.accel === 'tcg') this.accel = 'tcg';
    else if (this.opts.accel === 'kvm') {
      if (!(await kvmDeviceUsable())) throw new ToolError('kvm', 'accel kvm requested but /dev/kvm cannot be opened read-write');
      this.accel = 'kvm';
    } else {
      this.accel = await detectAccel(this.opts.kitDir, this.qemuBinary, this.qemuVersion!, this.kit!.kernelPath!, this.kit!.initrdPath!, opts);
    }
    return this.accel;
  }

  async create(spec: SandboxSpec, opts: { signal?: AbortSignal } = {}): Promise<void> {
    checkSocketPaths(spec.dir);
    const image = resolvePath(spec.image);
    const st = await stat(image).catch(() => undefined);
    if (!st?.isFile()) throw new InvalidArgumentError(`image file ${image} does not exist`);
    await mkdir(spec.dir, { recursive: true });
    const { overlay } = sandboxPaths(spec.dir);
    const tmp = `${overlay}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      // A qcow2 overlay backed by the raw image: constant time, and QEMU opens the backing file read-only.
      await runCommand(this.opts.qemuImg ?? 'qemu-img', ['create', '-q', '-f', 'qcow2', '-b', image, '-F', 'raw', tmp], {
        signal: opts.signal,
        pkg: 'qemu-utils',
      });
      await rename(tmp, overlay);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  private validateResources(spec: SandboxSpec): void {
    const cpus = availableParallelism();
    if (!Number.isInteger(spec.cpus) || spec.cpus < 1 || spec.cpus > cpus) {
      throw new InvalidArgumentError(`cpus ${spec.cpus} is not between 1 and the host's ${cpus}`);
    }
    const avail = hostMemAvailableMiB();
    if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < 64 || spec.memoryMiB > avail) {
      throw new InvalidArgumentError(`memory ${spec.memoryMiB} MiB is not between 64 and the host's available ${avail} MiB`);
    }
  }

  private async removeRuntimeFiles(dir: string): Promise<void> {
    const p = sandboxPaths(dir);
    await Promise.all([p.agentSocket, p.controlSocket, p.pidFile].map((f) => rm(f, { force: true })));
  }

  async start(spec: SandboxSpec, opts: { signal?: AbortSignal; bootTimeoutMs?: number } = {}): Promise<RunningInfo> {
    const { signal } = opts;
    this.validateResources(spec);
    await this.check({ signal });
    const accel = await this.resolveAccel({ signal });
    const p = sandboxPaths(spec.dir);
    if (!(await stat(p.overlay).catch(() => undefined))?.isFile()) {
      throw new InvalidArgumentError(`sandbox "${spec.name ?? spec.id}" has no root disk ${p.overlay}; create it first`);
    }
    const args = buildQemuArgs(spec, { kernel: this.kit!.kernelPath!, initrd: this.kit!.initrdPath! }, accel);
    const live = await this.liveQemu(spec.dir);
    if (live) throw new BhattiError('SANDBOX_RUNNING', `sandbox "${spec.name ?? spec.id}" is already running (QEMU pid ${live})`);
    await this.removeRuntimeFiles(spec.dir);
    throwIfAborted(signal);

    const log = await open(p.consoleLog, 'w');
    let child;
    try {
      child = spawn(this.qemuBinary, args, { detached: true, stdio: ['ignore', log.fd, log.fd], cwd: spec.dir });
    } finally {
      await log.close();
    }
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let spawnError: Error | undefined;
    child.on('exit', (code, sig) => (exited = { code, signal: sig }));
    child.on('error', (e) => (spawnError = e));
    child.unref();
    const pid = child.pid;
    const startTime = pid !== undefined ? processStartTime(pid) : undefined;

    const fail = async (reason: string, cause?: unknown): Promise<never> => {
      if (pid !== undefined && !exited) {
        signalProcess(pid, 'SIGKILL');
        await waitForExit(pid, startTime, 10_000);
      }
      await this.removeRuntimeFiles(spec.dir);
      if (cause instanceof AbortedError) throw cause;
      throw new BhattiError('VM_BOOT_FAILED', `sandbox "${spec.name ?? spec.id}" ${reason} (accel ${accel}); console: ${await consoleTail(p.consoleLog)}`, {
        cause,
        kind: 'internal',
      });
    };
    if (pid === undefined || startTime === undefined) return fail(`could not start ${this.qemuBinary}: ${spawnError?.message ?? 'no pid'}`);

    const bootTimeoutMs = opts.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS;
    const deadline = Date.now() + bootTimeoutMs;
    let client: QgaClient | undefined;
    try {
      for (;;) {
        if (signal?.aborted) return await fail('boot was aborted', new AbortedError());
        if (exited) return await fail(`QEMU exited during boot (code ${exited.code ?? exited.signal})`);
        if (Date.now() >= deadline) return await fail(`did not boot within ${bootTimeoutMs} ms`);
        if (!client || client.closed) {
          client = await QgaClient.open(p.agentSocket, { timeoutMs: 1000 }).catch(() => undefined);
          if (!client) {
            await sleep(100);
            continue;
          }
        }
        try {
          await client.sync({ timeoutMs: Math.max(100, Math.min(1000, deadline - Date.now())), signal });
          break;
        } catch (err) {
          if (err instanceof AbortedError) return await fail('boot was aborted', err);
        }
      }
    } finally {
      client?.close();
    }
    return {
      pid,
      startTime,
      agentSocket: p.agentSocket,
      controlSocket: p.controlSocket,
      consoleLog: p.consoleLog,
      accel,
    };
  }

  isRunning(info: RunningInfo): boolean {
    return processAlive(info.pid) && processStartTime(info.pid) === info.startTime;
  }

  private async acquireAgent(socket: string, signal?: AbortSignal): Promise<QgaClient> {
    const existing = this.agents.get(socket);
    if (existing) {
      const c = await existing.client.catch(() => undefined);
      if (c && !c.closed) {
        existing.refs++;
        c.ref();
        return c;
      }
      this.agents.delete(socket);
    }
    const entry = { client: QgaClient.connect(socket, { signal, timeoutMs: 30_000 }), refs: 1 };
    this.agents.set(socket, entry);
    try {
      return await entry.client;
    } catch (err) {
      if (this.agents.get(socket) === entry) this.agents.delete(socket);
      throw err;
    }
  }

  private releaseAgent(socket: string): void {
    const entry = this.agents.get(socket);
    if (!entry) return;
    if (--entry.refs <= 0) {
      this.agents.delete(socket);
      void entry.client.then((c) => c.close(), () => undefined);
    }
  }

  private dropAgent(socket: string): void {
    const entry = this.agents.get(socket);
    this.agents.delete(socket);
    void entry?.client.then((c) => c.close(), () => undefined);
  }

  private notRunning(spec: SandboxSpec): BhattiError {
    return new BhattiError('SANDBOX_NOT_RUNNING', `sandbox "${spec.name ?? spec.id}" is not running`);
  }

  async exec(spec: SandboxSpec, info: RunningInfo, req: ExecRequest): Promise<ExecResult> {
    if (!this.isRunning(info)) throw this.notRunning(spec);
    const socket = info.agentSocket;
    const engine = this;
    const lease = {
      client: await this.acquireAgent(socket, req.signal),
      paused: false,
      pause(): void {
        if (lease.paused) return;
        lease.paused = true;
        engine.releaseAgent(socket);
      },
      async resume(signal?: AbortSignal): Promise<void> {
        if (!lease.paused) return;
        lease.client = await engine.acquireAgent(socket, signal ?? req.signal);
        lease.paused = false;
      },
    };
    try {
      return await guestExec(lease, spec, req);
    } catch (err) {
      if (err instanceof AgentError && !this.isRunning(info)) {
        throw new BhattiError('SANDBOX_NOT_RUNNING', `sandbox "${spec.name ?? spec.id}" stopped while running ${req.argv[0]} (QEMU exited)`, { cause: err });
      }
      throw err;
    } finally {
      if (!lease.paused) this.releaseAgent(socket);
    }
  }

  async stop(spec: SandboxSpec, info: RunningInfo | undefined, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<void> {
    if (!info) {
      const pid = await this.liveQemu(spec.dir);
      if (pid) await terminate(pid, processStartTime(pid), 5000);
      await this.removeRuntimeFiles(spec.dir);
      return;
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    this.dropAgent(info.agentSocket);
    if (this.isRunning(info)) {
      try {
        const client = await QgaClient.connect(info.agentSocket, { timeoutMs: Math.min(5000, timeoutMs), signal: opts.signal });
        await client.shutdown('powerdown');
      } catch (err) {
        if (err instanceof AbortedError) throw err;
        // An unreachable agent is handled by the signals below.
      }
      if (!(await waitForExit(info.pid, info.startTime, timeoutMs))) {
        await terminate(info.pid, info.startTime, 5000);
      }
    }
    await this.removeRuntimeFiles(spec.dir);
  }

  async saveRootfs(spec: SandboxSpec, info: RunningInfo | undefined, outPath: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const { signal } = opts;
    const p = sandboxPaths(spec.dir);
    const target = resolvePath(outPath);
    await mkdir(dirname(target), { recursive: true });
    const tmp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      if (info && this.isRunning(info)) {
        await this.backupRunning(info, tmp, signal);
      } else {
        await runCommand(this.opts.qemuImg ?? 'qemu-img', ['convert', '-O', 'raw', p.overlay, tmp], { signal, pkg: 'qemu-utils' });
      }
      const fh = await open(tmp, 'r');
      await fh.sync();
      await fh.close();
      await rename(tmp, target);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /**
   * Point-in-time copy of a running sandbox's root disk: freeze the guest's root filesystem so
   * it is clean on disk, start a QMP drive-backup (which copies the disk as it was when the job
   * started, whatever the guest writes later), thaw at once, then wait for the job.
   */
  private async backupRunning(info: RunningInfo, tmp: string, signal?: AbortSignal): Promise<void> {
    if (!info.controlSocket) throw new ToolError('qemu', 'running sandbox has no QMP socket recorded');
    const qmp = await QmpClient.connect(info.controlSocket, { signal });
    const jobId = `bhatti-save-${randomBytes(4).toString('hex')}`;
    try {
      const events: QmpEvent[] = [];
      let wake: (() => void) | undefined;
      qmp.on('event', (e: QmpEvent) => {
        events.push(e);
        wake?.();
      });
      let closed: Error | undefined;
      qmp.on('closed', (e: Error) => {
        closed = e;
        wake?.();
      });
      const agent = await this.acquireAgent(info.agentSocket, signal);
      try {
        await agent.fsfreezeFreeze(['/sysroot'], { signal, timeoutMs: 30_000 });
        try {
          await qmp.execute('drive-backup', { 'job-id': jobId, device: 'root', target: tmp, format: 'raw', sync: 'full', mode: 'absolute-paths' });
        } finally {
          await agent.fsfreezeThaw({ timeoutMs: 30_000 });
        }
      } finally {
        this.releaseAgent(info.agentSocket);
      }
      const onAbort = (): void => wake?.();
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        for (;;) {
          const done = events.find(
            (e) => (e.event === 'BLOCK_JOB_COMPLETED' || e.event === 'BLOCK_JOB_CANCELLED') && e.data?.device === jobId,
          );
          if (done) {
            if (done.event === 'BLOCK_JOB_CANCELLED') throw new ToolError('qemu', `backup job ${jobId} was cancelled`);
            if (done.data?.error) throw new ToolError('qemu', `backup job ${jobId} failed: ${String(done.data.error)}`);
            return;
          }
          if (closed) throw closed;
          if (signal?.aborted) {
            await qmp.execute('block-job-cancel', { device: jobId, force: true }).catch(() => undefined);
            throw new AbortedError();
          }
          await new Promise<void>((r) => {
            wake = r;
            setTimeout(r, 1000);
          });
        }
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    } finally {
      qmp.close();
    }
  }

  async destroy(spec: SandboxSpec, info: RunningInfo | undefined): Promise<void> {
    if (info) {
      this.dropAgent(info.agentSocket);
      if (this.isRunning(info)) await terminate(info.pid, info.startTime, 5000);
    }
    // Also catch a QEMU the caller lost track of (e.g. a crash between spawn and recording it).
    const pid = await this.liveQemu(spec.dir);
    if (pid) await terminate(pid, processStartTime(pid), 5000);
    await rm(spec.dir, { recursive: true, force: true });
  }

  /** The pid of a live QEMU serving this sandbox dir, from its pid file, if any. */
  private async liveQemu(dir: string): Promise<number | undefined> {
    const p = sandboxPaths(dir);
    const pid = Number((await readFile(p.pidFile, 'utf8').catch(() => '')).trim());
    const ours = pid > 0 && processAlive(pid) && processCmdline(pid).some((a) => a.includes(p.overlay));
    return ours ? pid : undefined;
  }
}
