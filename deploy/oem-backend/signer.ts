import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { EvccError } from '../../core/errors.ts';
import { keyIdOf, signInput } from '../../firmware/ota/signing.ts';

/**
 * The OEM backend's answer-signing key (ECDSA P-256). The reference service loads it from a PKCS#8 PEM file,
 * encrypted with a passphrase taken from an environment variable when one is named; a production backend puts it
 * in an HSM/KMS and implements `AnswerSigner` on top of that.
 */
export interface AnswerSigner {
  readonly keyId: string;
  /** SPKI PEM, installed into every vehicle at production. */
  readonly publicKeyPem: string;
  sign(input: Uint8Array): Uint8Array;
}

export class KeyObjectSigner implements AnswerSigner {
  readonly keyId: string;
  readonly publicKeyPem: string;

  constructor(private readonly privateKey: KeyObject) {
    if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new EvccError('CONFIG_INVALID', 'OEM backend signing key must be EC P-256');
    }
    const pub = createPublicKey(privateKey);
    this.keyId = keyIdOf(pub);
    this.publicKeyPem = pub.export({ type: 'spki', format: 'pem' }).toString();
  }

  static fromPem(pem: string | Uint8Array, passphrase?: string): KeyObjectSigner {
    try {
      return new KeyObjectSigner(createPrivateKey({ key: typeof pem === 'string' ? pem : Buffer.from(pem), format: 'pem', ...(passphrase ? { passphrase } : {}) }));
    } catch (err) {
      if (err instanceof EvccError) throw err;
      throw new EvccError('CONFIG_INVALID', 'cannot load the OEM backend signing key (PKCS#8 PEM, EC P-256)', {}, { cause: err });
    }
  }

  static async fromFile(path: string, passphrase?: string): Promise<KeyObjectSigner> {
    let pem: Buffer;
    try {
      pem = await readFile(path);
    } catch (err) {
      throw new EvccError('CONFIG_INVALID', `cannot read signing key ${path}`, { path }, { cause: err });
    }
    return KeyObjectSigner.fromPem(pem, passphrase);
  }

  sign(input: Uint8Array): Uint8Array {
    return signInput(this.privateKey, input);
  }
}
