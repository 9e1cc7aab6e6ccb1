/** ISO 15118-3 SLAC, EV side: public surface for the orchestrator and tools. */
export { runSlac, type RunSlacOptions } from './driver.ts';
export { SlacEngine, type SlacResult, type EvseObservation, type SlacEvent, type SlacStateName, type LinkUpReport, type LinkUpProof } from './engine.ts';
export { decodeQcaFrame, encodeQcaFrame, isVendorMme, type QcaMessage, type QcaFrame, type NwInfoAvln, type NwInfoStation } from './qca-vendor.ts';
export { SlacSettings, slacSettings } from './settings.ts';
export { SlacError, type SlacErrorCode } from './errors.ts';
export { SLAC_TIMING, LOCAL_MODEM_MAC } from './constants.ts';
export { decodeFrame, encodeFrame, macToString, macFromString, toHex, fromHex } from './codec.ts';
