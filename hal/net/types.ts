/**
 * Network interfaces as the EVCC needs them: the modem's netdev (PLC link), its MAC and its IPv6 link-local
 * address (SDP and TLS run over link-local, always scoped to this interface — the Pi has eth0 too).
 */
export interface InterfaceInfo {
  name: string;
  index: number;
  mac: Uint8Array;
  /** fe80::/10 address without scope, when one is assigned and past DAD. */
  linkLocal?: string;
}

export interface NetInterfaces {
  lookup(name: string): Promise<InterfaceInfo>;
  /** Waits until the interface has a usable link-local address (DAD done). */
  waitLinkLocal(name: string, timeoutMs: number): Promise<string>;
}
