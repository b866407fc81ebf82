export { QgaClient, type CallOptions, type GuestExecArgs, type GuestExecStatus, type GuestFileRead } from './qga-client.js';
