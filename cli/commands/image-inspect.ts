import { Command, Option } from 'clipanion';
import { formatBytes, sanitize } from '../format.js';
import { BhattiCommand, type RunContext } from './base.js';

export class ImageInspectCommand extends BhattiCommand {
  static override paths = [['image', 'inspect']];
  static override usage = Command.Usage({ category: 'Images', description: 'Show details of an image' });

  name = Option.String({ name: 'NAME' });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    const i = await bhatti.images.inspect(this.name, { user, signal });
    if (this.json) return this.printJson(i);
    const c = i.config;
    const lines: [string, string][] = [
      ['Name', i.name],
      ['ID', i.id],
      ['Scope', i.owner ? `${i.scope} (owner ${i.owner})` : i.scope],
      ['Source', i.source],
      ['Digest', i.digest],
      ['Platform', i.platform],
      ['Size', `${formatBytes(i.size)} (${i.size} bytes, ext4)`],
      ['File digest', i.fileDigest],
      ['Created', i.created.toISOString()],
      ['Layers', String(i.layers.length)],
      ['Entrypoint', c.entrypoint ? JSON.stringify(c.entrypoint) : '-'],
      ['Cmd', c.cmd ? JSON.stringify(c.cmd) : '-'],
      ['WorkingDir', c.workingDir || '/'],
      ['User', c.user || '0'],
      ['Env', c.env.join(' ') || '-'],
    ];
    for (const [k, v] of lines) this.context.stdout.write(`${(k + ':').padEnd(13)} ${sanitize(v)}\n`);
  }
}
