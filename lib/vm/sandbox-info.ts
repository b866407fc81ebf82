import type { SandboxRecord, SandboxState } from '../storage/metadata-store.js';

/** What callers see of a sandbox. */
export interface SandboxInfo {
  id: string;
  name: string;
  owner: string;
  state: SandboxState;
  image: string;
  engine: string;
  cpus: number;
  memoryMiB: number;
  volumes: { volume: string; mountPath: string; readOnly: boolean }[];
  /** Host process id of the VM while running. */
  pid?: number;
  /** Acceleration in use while running (`kvm` or `tcg`). */
  accel?: string;
  created: Date;
}

export function toSandboxInfo(r: SandboxRecord, volumeNames: Map<string, string>): SandboxInfo {
  const rt = r.runtime as { pid?: number; accel?: string } | null;
  return {
    id: r.id,
    name: r.name,
    owner: r.owner,
    state: r.state,
    image: r.imageName,
    engine: r.engine,
    cpus: r.cpus,
    memoryMiB: r.memoryMiB,
    volumes: r.volumes.map((v) => ({ volume: volumeNames.get(v.volumeId) ?? v.volumeId, mountPath: v.mountPath, readOnly: v.readOnly })),
    ...(r.state === 'running' && rt ? { pid: rt.pid, accel: rt.accel } : {}),
    created: r.createdAt,
  };
}
