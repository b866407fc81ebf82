import { Command, Option } from 'clipanion';
import { formatAge, formatBinaryBytes, table } from '../format.js';
import { parseSize } from '../../lib/index.js';
import { BhattiCommand, type RunContext } from './base.js';

export class VolumeCreateCommand extends BhattiCommand {
  static override paths = [['volume', 'create']];
  static override usage = Command.Usage({ category: 'Volumes', description: 'Create an empty ext4 volume', examples: [['A 1 GiB volume', '$0 volume create data --size 1G']] });
  name = Option.String({ name: 'NAME' });
  size = Option.String('--size', '1G', { description: 'Size, e.g. 512M, 1G (default 1G)' });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    const v = await bhatti.volumes.create(this.name, { user, size: parseSize(this.size), signal });
    if (this.json) return this.printJson(v);
    this.context.stdout.write(`Created volume ${v.name} (${formatBinaryBytes(v.size)})\n`);
  }
}

export class VolumeListCommand extends BhattiCommand {
  static override paths = [['volume', 'list'], ['volume', 'ls']];
  static override usage = Command.Usage({ category: 'Volumes', description: 'List your volumes' });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    const vols = await bhatti.volumes.list({ user, signal });
    if (this.json) return this.printJson(vols);
    const rows = vols.map((v) => [v.name, formatBinaryBytes(v.size), v.attachedTo.join(',') || '-', formatAge(v.created)]);
    this.context.stdout.write(table(['NAME', 'SIZE', 'ATTACHED TO', 'CREATED'], rows));
  }
}

export class VolumeDeleteCommand extends BhattiCommand {
  static override paths = [['volume', 'delete'], ['volume', 'rm']];
  static override usage = Command.Usage({ category: 'Volumes', description: 'Delete a volume no sandbox uses' });
  names = Option.Rest({ name: 'NAME', required: 1 });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    for (const name of this.names) await bhatti.volumes.inspect(name, { user, signal });
    for (const name of this.names) {
      await bhatti.volumes.delete(name, { user, signal });
      if (!this.json) this.context.stdout.write(`Deleted volume ${name}\n`);
    }
    if (this.json) this.printJson(this.names.map((name) => ({ name, deleted: true })));
  }
}

export class VolumeCloneCommand extends BhattiCommand {
  static override paths = [['volume', 'clone']];
  static override usage = Command.Usage({
    category: 'Volumes',
    description: 'Copy a volume (a snapshot of its data; `image save` does not include volumes)',
    examples: [['Snapshot a volume', '$0 volume clone data data-copy']],
  });
  source = Option.String({ name: 'SOURCE' });
  target = Option.String({ name: 'TARGET' });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    const v = await bhatti.volumes.clone(this.source, this.target, { user, signal });
    if (this.json) return this.printJson(v);
    this.context.stdout.write(`Cloned ${this.source} to ${v.name}\n`);
  }
}
