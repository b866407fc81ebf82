export { QemuEngine, consoleTail, type QemuEngineOptions } from './qemu-engine.js';
export { detectAccel, probeKvm, kvmDeviceUsable, type Accel } from './accel-probe.js';
export { QmpClient, type QmpEvent } from './qmp-client.js';
