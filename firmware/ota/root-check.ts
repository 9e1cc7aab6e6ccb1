import { KeyUsageFlags } from '@peculiar/x509';
import { isSelfSigned, nameChains, parseCert, signedBy, type CertInfo } from '../pki/cert.ts';
import { otaError } from './errors.ts';

/**
 * Checks a root certificate offered by the OEM backend before it may become a trust anchor: the V2G root profile
 * (ISO 15118-2 Annex F as firmware/pki/profiles.ts states it: self-signed X.509 v3, P-256 with ecdsa-with-SHA256,
 * basicConstraints cA critical, keyUsage keyCertSign + cRLSign, a subject key identifier, valid now) and that it is
 * the anchor of the chain the SECC presented (the top certificate names it as issuer, by DN and key id, and its key
 * verifies that certificate). The full path is then checked by firmware/pki's validateChain.
 */
export function parseDer(der: Uint8Array, what: string): CertInfo {
  try {
    return parseCert(der);
  } catch (err) {
    throw otaError('OTA_ANSWER_MALFORMED', `${what} is not an X.509 certificate`, {}, err);
  }
}

export function checkV2gRootProfile(root: CertInfo, now: Date): void {
  const subject = root.subject;
  if (!root.basicConstraints?.ca) throw otaError('OTA_ROOT_NOT_CA', `certificate "${subject}" is not a CA certificate`, { subject });
  if (!isSelfSigned(root)) {
    throw otaError('OTA_ROOT_NOT_SELF_SIGNED', `certificate "${subject}" is not self-signed`, { subject, issuer: root.issuer });
  }
  const problems: string[] = [];
  if (root.version !== 3) problems.push(`X.509 v${root.version}`);
  if (!root.basicConstraints.critical) problems.push('basicConstraints not critical');
  const ku = root.keyUsage;
  if (ku === undefined) problems.push('keyUsage missing');
  else {
    if (!(ku & KeyUsageFlags.keyCertSign)) problems.push('keyUsage lacks keyCertSign');
    if (!(ku & KeyUsageFlags.cRLSign)) problems.push('keyUsage lacks cRLSign');
  }
  if (root.namedCurve !== 'P-256') problems.push(`key curve ${root.namedCurve ?? 'non-EC'}`);
  if (root.signatureHash !== 'SHA-256') problems.push(`signature hash ${root.signatureHash ?? 'unknown'}`);
  if (!root.subjectKeyId) problems.push('subjectKeyIdentifier missing');
  if (now < root.notBefore || now > root.notAfter) problems.push(`not valid at ${now.toISOString()}`);
  if (problems.length) {
    throw otaError('OTA_ROOT_PROFILE', `certificate "${subject}" violates the V2G root profile: ${problems.join(', ')}`, { subject, problems });
  }
}

/** The root must issue the SECC's top certificate: matching DN and key id, and a verifying signature. */
export function checkAnchors(root: CertInfo, presentedChain: Uint8Array[]): void {
  if (presentedChain.length === 0) throw otaError('OTA_ROOT_DOES_NOT_ANCHOR', 'the SECC presented no certificate');
  const top = parseDer(presentedChain[presentedChain.length - 1]!, 'SECC certificate');
  const fail = (why: string) =>
    otaError('OTA_ROOT_DOES_NOT_ANCHOR', `root "${root.subject}" does not anchor the SECC chain: ${why}`, { subject: root.subject, topIssuer: top.issuer, why });
  // The SECC may have sent its root as the top certificate; then the anchor must be that very certificate.
  if (isSelfSigned(top)) {
    if (top.fingerprint !== root.fingerprint) throw fail('the SECC sent a different self-signed top certificate');
    return;
  }
  if (!nameChains(top, root)) throw fail('issuer name or key identifier differs');
  if (!signedBy(top, root)) throw fail('its key does not verify the top certificate');
}
