import { Command, Option } from 'clipanion';
import { createInterface } from 'node:readline/promises';
import { InvalidArgumentError } from '../../lib/index.js';
import { BhattiCommand, type RunContext } from './base.js';

export class ImageDeleteCommand extends BhattiCommand {
  static override paths = [['image', 'delete'], ['image', 'rm']];
  static override usage = Command.Usage({
    category: 'Images',
    description: 'Delete one of your images',
    details: 'Asks for confirmation on a terminal; pass `-y` in scripts.',
  });

  names = Option.Rest({ name: 'NAME', required: 1 });
  yes = Option.Boolean('-y,--yes', false, { description: 'Do not ask for confirmation' });

  async run({ bhatti, user, signal }: RunContext): Promise<void> {
    // Resolve every name first, so a typo deletes nothing.
    for (const name of this.names) await bhatti.images.inspect(name, { user, signal });
    if (!this.yes) {
      if (!process.stdin.isTTY) throw new InvalidArgumentError(`refusing to delete ${this.names.join(', ')} without confirmation: pass -y`);
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      const answer = await rl.question(`Delete ${this.names.join(', ')}? [y/N] `, { signal });
      rl.close();
      if (!/^y(es)?$/i.test(answer.trim())) return;
    }
    const deleted = [];
    for (const name of this.names) deleted.push(await bhatti.images.delete(name, { user, signal }));
    if (this.json) return this.printJson(deleted.map((d) => ({ name: d.name, id: d.id })));
    for (const d of deleted) this.context.stdout.write(`Deleted ${d.name}\n`);
  }
}
