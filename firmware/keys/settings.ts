import { z } from 'zod';

/**
 * `tpm` section of the runtime config. TCTI from config (TPM.md §8: `device:/dev/tpmrm0` on the Pi — cross-process
 * sessions there are still to be verified on the device; `tabrmd:bus_type=system` is the fallback;
 * `swtpm:host=127.0.0.1,port=N` on a bench without a TPM HAT).
 */
export const TpmSettings = z.object({
  tcti: z.string().min(1).default('device:/dev/tpmrm0'),
  /** The installed release's OEM-signed RAUC bundle: `evcc boot` verifies it and that its rootfs image is what the initramfs measured. */
  bundlePath: z.string().default('/data/evcc/installed.raucb'),
  /** OEM bundle-signing keyring (the one RAUC itself uses). */
  keyring: z.string().default('/etc/rauc/keyring.pem'),
  /** Check the bundle certificate's validity period at boot; false on a device without RTC (see hal/rauc/bundle.ts). */
  bundleCheckTime: z.boolean().default(true),
}).strict();
export type TpmSettings = z.infer<typeof TpmSettings>;
