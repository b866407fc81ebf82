import { Command, Option } from 'clipanion';
import { formatAge, sanitize, table } from '../format.js';
import { InvalidArgumentError, parseVolumeSpec, type BhattiOptions, type SandboxInfo } from '../../lib/index.js';
import { BhattiCommand, type RunContext } from './base.js';

function describe(s: SandboxInfo): string {
  const vols = s.volumes.map((v) => `${v.volume}:${v.mountPath}${v.readOnly ? ':ro' : ''}`).join(', ');
  return [
    `Name:      ${s.name}`,
    `ID:        ${s.id}`,
    `State:     ${s.state}${s.pid ? ` (pid ${s.pid}, ${s.accel})` : ''}`,
    `Image:     ${s.image}`,
    `Engine:    ${s.engine}`,
    `CPUs:      ${s.cpus}`,
    `Memory:    ${s.memoryMiB} MiB`,
    `Volumes:   ${vols || '-'}`,
    `Created:   ${s.created.toISOString()}`,
  ].map(sanitize).join('\n') + '\n';
}

export class CreateCommand extends BhattiCommand {
  static override paths = [['create']];
  static override usage = Command.Usage({
    category: 'Sandboxes',
    description: 'Create a sandbox from an image and boot it',
    details: 'The sandbox gets its own copy-on-write view of the image (made in constant time); the image itself is never written.',
    examples: [
      ['A sandbox with 2 CPUs, 1 GiB and a volume', '$0 create --name build --image app --cpus 2 --memory 1024 --volume data:/data'],
    ],
  });

  name = Option.String('--name', { required: true, description: 'Sandbox name' });
  image = Option.String('--image', { required: true, description: 'Image name (see `bhatti image list`)' });
  cpus = Option.String('--cpus', '1', { description: 'Virtual CPUs (default 1)' });
  memory = Option.String('--memory', '512', { description: 'Memory in MiB (default 512)' });
  volume = Option.Array('--volume,-v', [], { description: 'Attach a volume: NAME:/path[:ro] (repeatable)' });
  accel = Option.String('--accel', { description: 'auto (probe KVM, fall back to TCG), kvm or tcg; default $BHATTI_ACCEL or auto' });

  override openOptions(): Partial<BhattiOptions> {
    return accelOption(this.accel);
  }

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    const s = await bhatti.vms.create(this.name, {
      user,
      image: this.image,
      cpus: intFlag('--cpus', this.cpus),
      memoryMiB: intFlag('--memory', this.memory),
      volumes: this.volume.map(parseVolumeSpec),
      signal,
    });
    if (this.json) return this.printJson(s);
    this.context.stdout.write(`Created ${s.name} (${s.accel ?? s.engine}, pid ${s.pid})\n`);
  }
}

/** `--accel` checked here so a typo is a user error naming the value. */
export function accelOption(accel: string | undefined): Partial<BhattiOptions> {
  if (accel === undefined) return {};
  if (accel !== 'auto' && accel !== 'kvm' && accel !== 'tcg') throw new InvalidArgumentError(`invalid --accel "${accel}": use auto, kvm or tcg`);
  return { accel };
}

/** Integer flags parsed strictly, so `--cpus 2x` is an error that names the value. */
export function intFlag(flag: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`invalid ${flag} "${value}": expected a whole number`);
  return Number(value);
}

export class ListCommand extends BhattiCommand {
  static override paths = [['list'], ['ls'], ['ps']];
  static override usage = Command.Usage({ category: 'Sandboxes', description: 'List your sandboxes' });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    const all = await bhatti.vms.list({ user, signal });
    if (this.json) return this.printJson(all);
    const rows = all.map((s) => [s.name, s.state, s.image, String(s.cpus), `${s.memoryMiB} MiB`, s.volumes.map((v) => v.volume).join(',') || '-', formatAge(s.created)]);
    this.context.stdout.write(table(['NAME', 'STATE', 'IMAGE', 'CPUS', 'MEMORY', 'VOLUMES', 'CREATED'], rows));
  }
}

export class InspectCommand extends BhattiCommand {
  static override paths = [['inspect']];
  static override usage = Command.Usage({ category: 'Sandboxes', description: 'Show details of a sandbox' });
  name = Option.String({ name: 'SANDBOX' });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    const s = await bhatti.vms.inspect(this.name, { user, signal });
    if (this.json) return this.printJson(s);
    this.context.stdout.write(describe(s));
  }
}

export class StopCommand extends BhattiCommand {
  static override paths = [['stop']];
  static override usage = Command.Usage({ category: 'Sandboxes', description: 'Shut a sandbox down cleanly (its root filesystem changes are kept)' });
  name = Option.String({ name: 'SANDBOX' });
  timeout = Option.String('--timeout', '20', { description: 'Seconds to wait before forcing it off' });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    const s = await bhatti.vms.stop(this.name, { user, signal, timeoutMs: intFlag('--timeout', this.timeout) * 1000 });
    if (this.json) return this.printJson(s);
    this.context.stdout.write(`Stopped ${s.name}\n`);
  }
}

export class StartCommand extends BhattiCommand {
  static override paths = [['start']];
  static override usage = Command.Usage({ category: 'Sandboxes', description: 'Boot a stopped sandbox again' });
  name = Option.String({ name: 'SANDBOX' });
  accel = Option.String('--accel', { description: 'auto (probe KVM, fall back to TCG), kvm or tcg; default $BHATTI_ACCEL or auto' });

  override openOptions(): Partial<BhattiOptions> {
    return accelOption(this.accel);
  }

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    const s = await bhatti.vms.start(this.name, { user, signal });
    if (this.json) return this.printJson(s);
    this.context.stdout.write(`Started ${s.name} (pid ${s.pid})\n`);
  }
}

export class DestroyCommand extends BhattiCommand {
  static override paths = [['destroy'], ['rm']];
  static override usage = Command.Usage({ category: 'Sandboxes', description: 'Stop a sandbox and delete it (its volumes survive)' });
  names = Option.Rest({ name: 'SANDBOX', required: 1 });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    for (const name of this.names) await bhatti.vms.inspect(name, { user, signal });
    for (const name of this.names) {
      await bhatti.vms.destroy(name, { user, signal });
      if (!this.json) this.context.stdout.write(`Destroyed ${name}\n`);
    }
    if (this.json) this.printJson(this.names.map((name) => ({ name, destroyed: true })));
  }
}
