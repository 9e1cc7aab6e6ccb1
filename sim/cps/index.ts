/**
 * The CPS / MO backend simulator (ISO 15118-2 CertificateInstallation / CertificateUpdate, answered with the test
 * PKI's software keys) and the OEM's provisioning-certificate issuer for TPM-held keys. Bench and test material only.
 */
export { answerCertificateInstallation, answerCertificateUpdate, CpsError, type CpsAnswer, type CpsErrorCode, type CpsForgery, type CpsOptions } from './cps.ts';
export { issueProvisioningCertificate, type ProvisioningCertificate } from './provisioning.ts';
