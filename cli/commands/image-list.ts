import { Command } from 'clipanion';
import { formatAge, formatBytes, shortDigest, table } from '../format.js';
import { BhattiCommand, type RunContext } from './base.js';

export class ImageListCommand extends BhattiCommand {
  static override paths = [['image', 'list'], ['image', 'ls'], ['images']];
  static override usage = Command.Usage({
    category: 'Images',
    description: 'List the images you can use: your own and the system tiers',
  });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    const images = await bhatti.images.list({ user, signal });
    if (this.json) return this.printJson(images);
    const rows = images.map((i) => [i.name, i.source, shortDigest(i.digest), formatBytes(i.size), i.scope, formatAge(i.created)]);
    this.context.stdout.write(table(['NAME', 'SOURCE', 'DIGEST', 'SIZE', 'SCOPE', 'CREATED'], rows));
  }
}
