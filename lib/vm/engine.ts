import type { Readable } from 'node:stream';

/** A volume file attached to a sandbox. */
export interface VolumeAttachment {
  /** Host path of the volume's ext4 file. */
  file: string;
  /** Absolute path inside the sandbox where it is mounted (validated by the caller). */
  mountPath: string;
  readOnly: boolean;
}

/** Everything an engine needs to know about one sandbox. */
export interface SandboxSpec {
  /** Stable id (a UUID); engines use it for naming, never user input. */
  id: string;
  /** The sandbox's name, for messages only (never for paths). */
  name?: string;
  /** Private directory for this sandbox's files (copy-on-write view, sockets, logs, pid file). */
  dir: string;
  /** Read-only base ext4 image. Engines must never write to it. */
  image: string;
  cpus: number;
  memoryMiB: number;
  volumes: VolumeAttachment[];
  /** Default environment for exec (the image's Env). */
  env: string[];
  /** Default working directory for exec (the image's WorkingDir). */
  workingDir: string;
  /** Default user for exec (the image's User). */
  user: string;
}

/** How to reach a running sandbox; persisted in the metadata store so later processes find it. */
export interface RunningInfo {
  pid: number;
  /** Process start time (from /proc/PID/stat) so a recycled pid is not mistaken for ours. */
  startTime: string;
  agentSocket: string;
  /** Optional engine control socket (QEMU's QMP). */
  controlSocket?: string;
  consoleLog: string;
  accel: string;
}

export interface ExecRequest {
  argv: string[];
  /** Extra `K=V` entries layered over the sandbox's default env. */
  env?: string[];
  cwd?: string;
  /** `uid`, `uid:gid` or a user name from the image's /etc/passwd. */
  user?: string;
  stdin?: Readable | Buffer;
  timeoutMs?: number;
  signal?: AbortSignal;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

export interface ExecResult {
  exitCode: number;
  /** Set when the command was killed by a signal. */
  signal?: number;
  timedOut: boolean;
}

/**
 * What a VM engine does. Small on purpose so a Firecracker engine can follow the QEMU one:
 * qemu-ga also listens on vsock.
 */
export interface Engine {
  readonly name: string;
  /** Checks the host has what the engine needs; throws a ToolError naming the missing package. */
  check(opts?: { signal?: AbortSignal }): Promise<void>;
  /** Creates the sandbox's copy-on-write view of `spec.image` in `spec.dir`, in constant time. */
  create(spec: SandboxSpec, opts?: { signal?: AbortSignal }): Promise<void>;
  /** Boots the sandbox as a detached process and waits until its agent answers. */
  start(spec: SandboxSpec, opts?: { signal?: AbortSignal; bootTimeoutMs?: number }): Promise<RunningInfo>;
  /** Whether the process recorded in `info` is still ours and alive. */
  isRunning(info: RunningInfo): boolean;
  exec(spec: SandboxSpec, info: RunningInfo, req: ExecRequest): Promise<ExecResult>;
  /**
   * Clean guest shutdown; SIGTERM, then SIGKILL, after `timeoutMs`. Without `info` (a boot whose
   * starter died), stops whatever VM of this sandbox is still running, forcibly.
   */
  stop(spec: SandboxSpec, info: RunningInfo | undefined, opts?: { signal?: AbortSignal; timeoutMs?: number }): Promise<void>;
  /** Writes a consistent raw ext4 copy of the sandbox's root filesystem to `outPath` (running or stopped). */
  saveRootfs(spec: SandboxSpec, info: RunningInfo | undefined, outPath: string, opts?: { signal?: AbortSignal }): Promise<void>;
  /** Kills the sandbox if running and removes everything in `spec.dir`. */
  destroy(spec: SandboxSpec, info: RunningInfo | undefined): Promise<void>;
}
