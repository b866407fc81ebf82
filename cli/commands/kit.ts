import { Command } from 'clipanion';
import { bootKitStatus, buildBootKit, type BootKitStatus } from '../../lib/index.js';
import { BhattiCommand, type RunContext } from './base.js';

function show(s: BootKitStatus): string {
  const m = s.manifest;
  return [
    `Kit dir:   ${s.dir}`,
    `Present:   ${s.present ? `yes${s.stale ? ' (stale: rebuilt on next use)' : ''}` : 'no (built on first use)'}`,
    ...(m ? [`Kernel:    ${m.kernelVersion}`, `Modules:   ${m.modules.join(', ')}`, `Built:     ${m.created}`] : []),
    ...(s.reasons.length ? [`Notes:     ${s.reasons.join('; ')}`] : []),
  ].join('\n') + '\n';
}

export class KitBuildCommand extends BhattiCommand {
  static override paths = [['kit', 'build']];
  static override usage = Command.Usage({
    category: 'Engine',
    description: 'Build the boot kit (kernel + initrd with qemu-ga) from the host\'s packages',
    details: 'Runs automatically on first use; run it again after a kernel or qemu-guest-agent upgrade.',
  });

  async run({ bhatti, signal }: RunContext): Promise<void> {
    const s = await buildBootKit(bhatti.paths.kit, { signal });
    if (this.json) return this.printJson(s);
    this.context.stdout.write(show(s));
  }
}

export class KitStatusCommand extends BhattiCommand {
  static override paths = [['kit', 'status']];
  static override usage = Command.Usage({ category: 'Engine', description: 'Say what boot kit is installed and whether it is current' });

  async run({ bhatti, signal }: RunContext): Promise<void> {
    const s = await bootKitStatus(bhatti.paths.kit, { signal });
    if (this.json) return this.printJson(s);
    this.context.stdout.write(show(s));
  }
}
