import { describe, expect, it } from 'vitest';
import { hasResourceManager } from './tpm2-tools.ts';

describe('TCTI → resource manager (README.md)', () => {
  it('the kernel RM and tpm2-abrmd virtualise handles; /dev/tpm0, swtpm and mssim do not', () => {
    for (const t of ['device:/dev/tpmrm0', 'device:/dev/tpmrm1', 'tabrmd', 'tabrmd:bus_type=session,bus_name=org.evcc.Lab.x', 'libtss2-tcti-tabrmd.so.0:bus_type=system']) {
      expect(hasResourceManager(t), t).toBe(true);
    }
    for (const t of ['device', 'device:/dev/tpm0', 'swtpm:host=127.0.0.1,port=2321', 'swtpm', 'mssim:port=2321', 'device:/dev/tpmrm0x']) {
      expect(hasResourceManager(t), t).toBe(false);
    }
  });
});
