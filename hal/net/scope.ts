/** IPv6 scope helpers: link-local (fe80::/10) and multicast addresses need the interface. */
export function needsScope(address: string): boolean {
  const a = address.toLowerCase();
  return /^fe[89ab][0-9a-f]?:/.test(a) || a.startsWith('ff');
}

/** `fe80::1` + `eth1` → `fe80::1%eth1` (unchanged when it needs no scope or already has one). */
export function scoped(address: string, iface: string | undefined): string {
  if (!iface || address.includes('%') || !needsScope(address)) return address;
  return `${address}%${iface}`;
}

/** `fe80::1%eth1` → { address: 'fe80::1', iface: 'eth1' }. */
export function unscope(address: string): { address: string; iface?: string } {
  const i = address.indexOf('%');
  return i < 0 ? { address } : { address: address.slice(0, i), iface: address.slice(i + 1) };
}
