/**
 * Public API of SDP: `discoverSecc({udp, clock, log}, {iface, localAddress?, settings, signal?})` → `SeccEndpoint`
 * ({address, port, security, transport, iface, requests, ignored, elapsedMs}); errors SDP_NO_RESPONSE,
 * SDP_TLS_REQUIRED, ABORTED. Settings: `SdpSettings` (zod, config section `sdp`). UDP transports:
 * hal/net/udp6.ts `NodeUdp6` (real), `SimIpv6Link.host(iface, address)` (simulated).
 */
export * from './constants.ts';
export * from './codec.ts';
export * from './settings.ts';
export * from './engine.ts';
export * from './client.ts';
