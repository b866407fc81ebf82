/**
 * A test harness's view: boot a sandbox from an image, run commands, clean up automatically.
 *   npx tsx examples/test-harness.ts IMAGE [DATA_DIR]
 * (pull an image first, e.g. `bhatti image pull 127.0.0.1:5000/debian/bookworm:minbase --name debian`)
 */
import { Bhatti } from '../lib/index.js';
import { userInfo } from 'node:os';

const [image, dataDir] = process.argv.slice(2);
if (!image) {
  console.error('usage: test-harness.ts IMAGE [DATA_DIR]');
  process.exit(1);
}

await using bhatti = await Bhatti.open({ dataDir });
const user = userInfo().username;
{
  // Destroyed when this block ends, even if a step throws.
  await using sb = await bhatti.vms.launch(`harness-${process.pid}`, { user, image });
  const uname = await sb.run(['uname', '-r']);
  console.log('guest kernel:', uname.stdout.trim());

  const r = await sb.run(['sh', '-c', 'echo "hello from $(hostname)"; echo oops >&2; exit 3']);
  console.log({ exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr });

  await sb.run(['sh', '-c', 'mkdir -p /tmp && echo state > /tmp/state']);
  const again = await sb.run(['cat', '/tmp/state']);
  console.log('file written by an earlier step:', again.stdout.trim());
}
console.log('sandbox destroyed:', (await bhatti.vms.list({ user })).every((s) => !s.name.startsWith('harness-')));
