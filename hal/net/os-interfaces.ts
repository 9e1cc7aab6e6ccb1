import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { EvccError } from '../../core/errors.ts';
import { macFromString } from '../plc/sim.ts';
import type { InterfaceInfo, NetInterfaces } from './types.ts';

/** Real interface lookup: /sys/class/net for index, MAC and DAD state, os.networkInterfaces for addresses. */
export class OsInterfaces implements NetInterfaces {
  async lookup(name: string): Promise<InterfaceInfo> {
    let index: number;
    let mac: Uint8Array;
    try {
      index = Number((await readFile(`/sys/class/net/${name}/ifindex`, 'utf8')).trim());
      mac = macFromString((await readFile(`/sys/class/net/${name}/address`, 'utf8')).trim());
    } catch (err) {
      throw new EvccError('NET_NO_INTERFACE', `interface ${name} not found`, { iface: name }, { cause: err });
    }
    const linkLocal = await this.readyLinkLocal(name);
    return linkLocal ? { name, index, mac, linkLocal } : { name, index, mac };
  }

  async waitLinkLocal(name: string, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ll = await this.readyLinkLocal(name);
      if (ll) return ll;
      if (Date.now() >= deadline) {
        throw new EvccError('NET_NO_LINK_LOCAL', `no link-local IPv6 address on ${name} after ${timeoutMs} ms`, { iface: name });
      }
      await delay(50);
    }
  }

  /** Link-local address that has finished duplicate address detection (not "tentative" in /proc/net/if_inet6). */
  private async readyLinkLocal(name: string): Promise<string | undefined> {
    let table = '';
    try {
      table = await readFile('/proc/net/if_inet6', 'utf8');
    } catch {
      const ll = networkInterfaces()[name]?.find((a) => a.family === 'IPv6' && a.address.startsWith('fe80'));
      return ll?.address.split('%')[0];
    }
    for (const line of table.split('\n')) {
      const [hex, , , scope, flags, dev] = line.trim().split(/\s+/);
      if (dev !== name || !hex || scope !== '20') continue;
      const tentative = (parseInt(flags ?? '0', 16) & 0x40) !== 0; // IFA_F_TENTATIVE
      if (tentative) continue;
      const groups = hex.match(/.{4}/g)!.map((g) => g.replace(/^0{1,3}/, ''));
      return compressIpv6(groups);
    }
    return undefined;
  }
}

function compressIpv6(groups: string[]): string {
  const full = groups.join(':');
  // Replace the longest run of zero groups with "::" (RFC 5952).
  let best: [number, number] = [-1, 0];
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > best[1]) best = [i, j - i];
    i = j;
  }
  if (best[1] < 2) return full;
  return `${groups.slice(0, best[0]).join(':')}::${groups.slice(best[0] + best[1]).join(':')}`;
}
