/**
 * What a composition root tells the dashboard about the vehicle: the certificate store (roots, OEM provisioning and
 * contract chains), the key service's answer, measured boot, the security policy and the validated config. Turned
 * into the certificate and system views (firmware/dashboard) here, with the calendar time of the I/O edge.
 * Read-only: the store is listed, never written.
 */
import { certificateView } from '../../firmware/dashboard/certificates.ts';
import { systemView, type SystemSource } from '../../firmware/dashboard/system.ts';
import type { CertificateStore } from '../../firmware/pki/store.ts';
import type { DashboardHub } from './hub.ts';

export interface VehicleSnapshot extends SystemSource {
  store?: CertificateStore;
  /** The contract key the key service uses now. */
  activeContractId?: string;
}

export function publishVehicle(hub: DashboardHub, v: VehicleSnapshot, now: Date = new Date()): void {
  const s = v.store;
  hub.certificates(certificateView({
    roots: s ? s.listRoots().map((r) => ({ der: r.der, source: r.source, ...(r.approvedBy ? { approvedBy: r.approvedBy } : {}) })) : [],
    ...(s?.getOemProvisioningChain() ? { oemProvisioningChain: s.getOemProvisioningChain()! } : {}),
    contractChains: s ? s.listContractChains() : [],
    ...(v.activeContractId ? { activeContractId: v.activeContractId } : {}),
    ...(s ? { storeMode: s.mode } : {}),
  }, now));
  hub.system(systemView(v));
}
