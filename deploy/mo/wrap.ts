import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EvccError } from '../../core/errors.ts';
import { encodeImportBlob, objectName, privateScalarOf, wrapForImport, type ImportBlobFile } from '../../firmware/keys/duplicate.ts';

/**
 * Mobility operator backend, offline, no TPM (TR-2019-04 §3.3.3 direct import): wraps the contract private key
 * for one vehicle's storage key. The result can only be imported by that TPM, and the key it creates is bound
 * directly to the OEM state policy A (`keys.policy` from the vehicle's export), sign-only.
 */
export interface WrapOptions {
  contractKeyPem: string | Uint8Array;
  /** Directory written by `evcc tpm provision --export` (storage.tpm2b_pub, keys.policy). */
  deviceExportDir: string;
}

export async function wrapContractKey(o: WrapOptions): Promise<ImportBlobFile> {
  const read = async (f: string) => {
    try {
      return new Uint8Array(await readFile(join(o.deviceExportDir, f)));
    } catch (err) {
      throw new EvccError('CONFIG_INVALID', `device export lacks ${f}`, { file: f }, { cause: err });
    }
  };
  const storagePublic = await read('storage.tpm2b_pub');
  const keysPolicy = await read('keys.policy');
  const scalar = privateScalarOf(o.contractKeyPem);
  try {
    const blob = wrapForImport(scalar, { storageKeyPublic: storagePublic, authPolicy: keysPolicy });
    return encodeImportBlob(blob, objectName(storagePublic));
  } finally {
    scalar.fill(0);
  }
}
