export { buildBootKit, bootKitStatus, ensureBootKit, KIT_FORMAT, type BootKitManifest, type BootKitStatus } from './boot-kit.js';
export { AGENT_PORT_NAME, PROBE_MARKER, ROOT_SERIAL } from './guest-scripts.js';
export { findHostKernel, resolveModules, REQUIRED_MODULES, type HostKernel, type ResolvedModule } from './kernel-modules.js';
