/**
 * The one closed registry of stable error codes (ARCHITECTURE.md: "Every error is a typed error with a stable code,
 * declared once in the code registry in core/"). Each entry is a code the product can raise — as an EvccError or one of
 * its subclasses, as a session StopReason, or as a readiness refusal — with one line of what it means.
 *
 * Codes never change once published: bench logs, HIL reports and the OEM backend match on them. Add a code here in the
 * same change that first raises it, and remove it when nothing raises it any more: core/error-codes.test.ts scans
 * the source tree and fails on an unregistered or a dead code. Subsystem code unions (firmware/slac/errors.ts, …) stay
 * where they are for the subsystem's own typing; their members must be entries here.
 *
 * The session engine builds its per-exchange codes from the protocol module's prefix (`ISO2_`, `DIN_`, and `SESSION_`
 * before a module is chosen): each combination is listed.
 */
export const ERROR_CODES = {
  // ── Common (no single protocol)
  ABORTED: 'the operation was cancelled by its caller (abort signal, closed port or object)',
  INTERNAL: 'a failure that carries no code of ours (a bug or a foreign exception): reported under this code',
  UNKNOWN: 'a cause without a code of ours, recorded in the details of a coded error',
  CONFIG_INVALID: 'a configuration or option value is invalid',
  IO_FAILED: 'an I/O operation of the OS failed (cause attached)',
  PREREQUISITE_MISSING: 'a tool, addon or service this needs is missing or does not start',
  STORE_CORRUPT: 'a persisted record is not JSON or is malformed',
  STORE_NOT_A_FILE: 'a store entry (or the store’s root) is not a regular file / directory as expected',

  // ── TPM (hal/tpm): response-code classes and tool failures
  TPM_AUTH_FAIL: '0x98E-type: wrong authValue (counts against the dictionary-attack counter)',
  TPM_AUTH_UNAVAILABLE: '0x12F: no usable authorisation (policy-only object used with a password/none)',
  TPM_BAD_AUTH: '0x9A2-type: wrong authorisation of an entity without DA protection (owner or endorsement hierarchy)',
  TPM_BLOB_INTEGRITY: '0x9F-type at Load/Import: wrapped blob corrupted or made for another parent',
  TPM_CONTEXT_INVALID: '0x1DF-type: saved context from before a TPM Reset/Restart (integrity check)',
  TPM_ERROR: 'any other TPM response code',
  TPM_HIERARCHY_DISABLED: '0x185-type: the hierarchy is disabled (the platform hierarchy after evcc boot lock-platform)',
  TPM_KEY_ATTRIBUTES: '0x182-type: key used for an operation its attributes forbid (restricted decrypt)',
  TPM_KEY_USE: '0x19C-type: key type not usable for the operation (storage key signing)',
  TPM_LOCKOUT: '0x921: dictionary-attack lockout',
  TPM_NV_UNINITIALIZED: '0x14A: NV index never written',
  TPM_OBJECT_MEMORY: '0x902: out of object slots (a leak)',
  TPM_PCR_CHANGED: '0x128: PCRs changed after the policy session was armed',
  TPM_POLICY_FAIL: '0x99D-type: session digest is not the object’s authPolicy',
  TPM_POLICY_NOT_APPROVED: '0x1C4 at PolicyAuthorize: the session state (PCR, version) is not what the OEM signed',
  TPM_POLICY_PCR: '0x1C4 at PolicyPCR: PCR value differs from the one given',
  TPM_POLICY_ROLLBACK: '0x126 at PolicyNV: firmware version lower than the anti-rollback counter',
  TPM_SESSION_INVALID: 'a TPM session context is no longer loadable',
  TPM_SESSION_MEMORY: '0x903: out of session slots (sessions of unclosed key services)',
  TPM_SIGNATURE_INVALID: '0x2DB-type: signature does not verify',
  TPM_TICKET_INVALID: '0x4C4-type at PolicyAuthorize: ticket not issued for this key/policy',
  TPM_TOOL_FAILED: 'tpm2-tools failed without a TPM response code',
  TPM_UNREACHABLE: 'the TCTI could not connect to the TPM',

  // ── Network (hal/net)
  NET_NO_INTERFACE: 'the network interface does not exist',
  NET_NO_LINK_LOCAL: 'no link-local IPv6 address on the interface within the budget',
  NET_SEND_FAILED: 'a UDP send failed or the socket is closed',
  NET_SOCKET_FAILED: 'a UDP socket could not be bound (port in use …)',

  // ── TCP connector
  TCP_CONNECT_FAILED: 'refused, unreachable, reset before the connection was up',
  TCP_TIMEOUT: 'no SYN-ACK within timeoutMs',

  // ── TLS client
  TLS_CLIENT_CERT_REJECTED: 'TLS 1.3: the SECC refused the vehicle certificate after our Finished',
  TLS_CLIENT_CERT_REQUESTED: 'TLS 1.2: the SECC asked for a client certificate and refused the handshake without one',
  TLS_CLIENT_CREDENTIALS_MISSING: 'mutual profile without vehicle certificate/key',
  TLS_CONNECT_FAILED: 'TCP connect for TLS refused or unreachable',
  TLS_HANDSHAKE_FAILED: 'alert from the server, version or suite mismatch, or close during the handshake',
  TLS_NOT_OFFERED: 'SDP answered "no TLS" where TLS was asked for (evcc tls-probe)',
  TLS_PROFILE_MISMATCH: 'negotiated version/suite outside the profile',
  TLS_TIMEOUT: 'the TLS handshake took longer than its budget',
  TLS_UNKNOWN_ROOT: 'chain well-formed but not anchored in an installed V2G root (→ OTA root fetch)',

  // ── MQTT transport
  MQTT_PACKET_TOO_LARGE: 'an incoming MQTT packet announces more than the size cap, or a malformed remaining length',

  // ── Control pilot board (hal/pilot)
  PILOT_CLOSED: 'the pilot board connection is closed',
  PILOT_NO_ACK: 'the pilot board did not acknowledge a command in time',
  PILOT_NO_READING: 'the pilot board sent no CP line in time',
  PILOT_OPEN_FAILED: 'the pilot board serial port cannot be opened',
  PILOT_REFUSED: 'the pilot board refused a command',

  // ── Boot: measured boot and commit
  BOOT_NO_POLICY: 'no signed state policy given or installed for the expected release',
  BOOT_EVENT_LOG_MISSING: 'the initramfs measurement hook left no event log this boot (it did not run, or could not write it)',
  BOOT_EVENT_LOG_MALFORMED: 'the measurement event log is not an evcc-measure-log/1 file',
  BOOT_EVENT_LOG_MISMATCH: 'the measurement PCR does not equal the replayed event log: something outside the initramfs hook extended it, or the TPM missed its reset',
  BOOT_MEASURE_FAILED: 'the initramfs measurement hook failed (no extend): the boot stops there',
  BOOT_PCR_UNEXPECTED: 'the measurement PCR holds more or other events than the one root file system measurement from zero',
  BOOT_ROOTFS_MISMATCH: 'the root file system that booted is not the image of the installed, OEM-signed release',
  BOOT_POLICY_MISMATCH: 'the signed state policy is for another root file system, bundle or release version',
  BOOT_ROLLBACK: 'the bundle version is older than the anti-rollback counter (or the counter is above it)',

  // ── Update bundles (rauc)
  BUNDLE_BUILD_FAILED: 'building the rauc bundle failed',
  BUNDLE_INVALID: 'rauc refused the bundle, or printed no bundle information',
  BUNDLE_SIGNER_UNTRUSTED: 'the bundle’s signer does not chain to the OEM keyring (another key, or a certificate not valid now)',
  RAUC_UNAVAILABLE: 'the RAUC service is not reachable on the system bus, or left it during an operation',
  RAUC_BUSY: 'the RAUC service already runs an operation (one install at a time)',
  RAUC_INSTALL_FAILED: 'RAUC finished an install with an error (its LastError attached)',
  RAUC_MARK_FAILED: 'RAUC refused to mark a slot good, bad or active',
  SYSTEM_REBOOT_FAILED: 'the reboot command (update.rebootCommand) could not be run or exited non-zero',
  OTA_UPDATE_FELL_BACK: 'the updated slot did not boot: the boot loader fell back to the previous slot (job failed, counter unchanged)',
  OTA_JOB_MALFORMED: 'the update job is not a signed job document of the expected shape (or exceeds its size cap)',
  OTA_JOB_UNTRUSTED_SIGNER: 'the update job names a signing key other than the OEM job key installed at production',
  OTA_JOB_SIGNATURE_INVALID: 'the update job’s OEM signature does not verify',
  OTA_JOB_WRONG_VEHICLE: 'the update job is for another vehicle',
  OTA_JOB_DOWNGRADE: 'the update job’s release is below the NV anti-rollback counter',
  OTA_JOB_NOT_NEWER: 'the update job’s release is not newer than the running release',
  OTA_JOB_INCOMPATIBLE: 'the update job is for another compatible string (hardware / system) than this vehicle’s',
  OTA_JOB_EXPIRED: 'the update job is past its expiry',
  OTA_JOB_POLICY_MISMATCH: 'the release’s signed state policy in the job is for another version or bundle than the job names',
  OTA_JOB_BACKEND_SILENT: 'the OEM backend did not answer a job get or state report within the budget',
  OTA_JOB_REPORT_REJECTED: 'the OEM backend refused a job state report (unknown job or a forbidden transition)',
  OTA_DOWNLOAD_URL_REFUSED: 'the bundle URL is not https:// (never downgraded to plain HTTP)',
  OTA_DOWNLOAD_TLS: 'the bundle server’s TLS chain or name does not verify against the OEM backend CA',
  OTA_DOWNLOAD_NETWORK: 'the bundle download connection was refused, broke or went idle (the partial file is kept for resume)',
  OTA_DOWNLOAD_HTTP: 'the bundle server answered with a status other than 200/206, or a Content-Range that does not fit',
  OTA_DOWNLOAD_RANGE_UNSATISFIABLE: 'the bundle server answered 416: the requested start lies beyond the resource',
  OTA_DOWNLOAD_OVERSIZED: 'the bundle is larger than the job says or the configured cap (refused before buffering)',
  OTA_DOWNLOAD_SHA256_MISMATCH: 'the downloaded bundle’s SHA-256 is not the one the signed job names (file removed)',

  // ── SLAC (ISO 15118-3)
  SLAC_ABORTED: 'SLAC was aborted by its caller',
  SLAC_DECODE_BAD_FIELD: 'a SLAC message field is outside its allowed values',
  SLAC_DECODE_BAD_MMV: 'a management message version other than HomePlug AV 1.1',
  SLAC_DECODE_NOT_HOMEPLUG: 'not a HomePlug AV frame (ethertype)',
  SLAC_DECODE_TRUNCATED: 'the frame ends inside a SLAC message',
  SLAC_DECODE_UNKNOWN_MMTYPE: 'a management message type SLAC does not know',
  SLAC_LINK_FAILED: 'cannot send on the PLC interface',
  SLAC_LINK_NOT_JOINED: 'the modem did not join the charger\'s AVLN within TT_match_join after CM_SET_KEY (no join indication, NID not in VS_NW_INFO)',
  SLAC_NO_SUITABLE_EVSE: 'no charger within the attenuation threshold',
  SLAC_SET_KEY_REJECTED: 'the local modem rejected CM_SET_KEY.REQ',
  SLAC_TIMEOUT_ATTEN_CHAR: 'no CM_ATTEN_CHAR.IND within TT_EV_atten_results',
  SLAC_TIMEOUT_MATCH: 'no CM_SLAC_MATCH.CNF after the allowed requests',
  SLAC_TIMEOUT_PARM_CNF: 'no CM_SLAC_PARM.CNF after the allowed requests (TT_match_response)',
  SLAC_TIMEOUT_SET_KEY: 'the local modem never confirmed CM_SET_KEY.REQ',

  // ── SDP (SECC discovery)
  SDP_BAD_FIELD: 'a field outside its allowed values',
  SDP_MALFORMED: 'not a V2GTP datagram of the expected type and exact length',
  SDP_NO_RESPONSE: 'no valid SECCDiscoveryRes after SDP_MAX_REQUESTS requests',
  SDP_TLS_REQUIRED: 'the SECC offers no TLS while policy requires it (PnC)',

  // ── V2GTP framing
  V2GTP_BAD_VERSION: 'V2GTP version bytes are not 01 FE',
  V2GTP_CLOSED: 'the V2GTP channel is closed',
  V2GTP_LENGTH_MISMATCH: 'the V2GTP payload length does not match the header',
  V2GTP_PAYLOAD_TOO_LARGE: 'the V2GTP payload exceeds the accepted maximum',
  V2GTP_TRUNCATED: 'shorter than the 8-byte V2GTP header',
  V2GTP_UNKNOWN_PAYLOAD_TYPE: 'a V2GTP payload type not accepted here',

  // ── EXI codec
  EXI_ENCODE_INVALID: 'a message that does not fit the schema (missing/unknown field, value out of range)',
  EXI_HEADER: 'not an EXI header this profile accepts (0x80: no cookie, no options, version 1)',
  EXI_INVALID: 'an event code or value the grammar does not allow',
  EXI_LIMIT: 'a length, count or depth over the decoder’s bounds',
  EXI_TRUNCATED: 'the stream ended inside an event or value',
  EXI_UNKNOWN_SCHEMA: 'no such schema or element',
  EXI_UNSUPPORTED: 'a valid but unsupported construct (undeclared SE(*)/AT(*)/CH, xsi:type, wildcard content)',

  // ── EXI XML signatures
  XMLDSIG_ALGORITHM: 'an unsupported SignatureMethod or DigestMethod',
  XMLDSIG_BAD_KEY: 'the verification key is not a certificate or public key',
  XMLDSIG_BAD_SIGNATURE: 'malformed signature or signed element',
  XMLDSIG_DIGEST_MISMATCH: 'reference digest does not match the element',
  XMLDSIG_DUPLICATE_ID: 'duplicate Id in the message body',
  XMLDSIG_NO_SIGNATURE: 'message carries no header signature',
  XMLDSIG_REFERENCE_MISSING: 'a signed element needs an Id attribute',
  XMLDSIG_SIGNER_FAILED: 'the signer (TPM key) failed',

  // ── PKI: certificates, path validation, root store
  PKI_ALGORITHM: 'key or signature algorithm outside the profile (P-256 / ecdsa-with-SHA256 for ISO 15118-2)',
  PKI_BAD_SIGNATURE: 'a certificate signature does not verify under its issuer',
  PKI_CERT_EXPIRED: 'a certificate has expired',
  PKI_CERT_MALFORMED: 'not DER X.509 v3, or over the size cap',
  PKI_CERT_NOT_YET_VALID: 'a certificate is not valid yet',
  PKI_CHAIN_EMPTY: 'the peer presented no certificate',
  PKI_CHAIN_TOO_LONG: 'the peer presented more certificates than the profile allows',
  PKI_KEY_USAGE: 'key usage not as the ISO 15118-2 profile of that role demands',
  PKI_NOT_A_ROOT: 'asked to install something that is not a self-signed V2G root CA',
  PKI_NOT_CA: 'an issuing certificate lacks basicConstraints CA:TRUE',
  PKI_OPENSSL_REJECTED: 'openssl verify -x509_strict rejects the certificate (bench cross-check)',
  PKI_PATH_LENGTH: 'pathLenConstraint exceeded',
  PKI_ROOT_APPROVAL_INVALID: 'a root’s OEM approval statement does not verify (unknown key, bad signature, wrong purpose, expired)',
  PKI_ROOT_NOT_INSTALLED: 'no installed V2G root has that fingerprint or key id',
  PKI_ROOT_UNAPPROVED: 'a root without an OEM approval statement where one is required',
  PKI_SELF_SIGNED_LEAF: 'the leaf certificate is self-signed',
  PKI_STORE_CONFLICT: 'the certificate store’s version counter moved since this process opened it (another writer): reopen',
  PKI_STORE_CORRUPT: 'the persisted store does not parse',
  PKI_STORE_FULL: 'the root store holds its maximum number of roots',
  PKI_STORE_MISSING: 'no persisted certificate store',
  PKI_STORE_READ_ONLY: 'the certificate store is opened read-only (degraded trust)',
  PKI_STORE_ROLLED_BACK: 'the persisted store is older than its TPM version counter (an old copy put back)',
  PKI_STORE_TAMPERED: 'integrity tag of the persisted store does not match',
  PKI_UNKNOWN_ROOT: 'chain is well-formed but ends outside the installed roots',

  // ── Keys: TPM key service, runtime secret, vehicle trust
  KEYS_BLOB_MALFORMED: 'a TPM-wrapped blob or key transport value is malformed (truncated, wrong length)',
  KEYS_DIGEST_INVALID: 'a digest to sign is not 32 bytes (SHA-256)',
  KEYS_DISABLED: 'no TPM key service (--no-keys)',
  KEYS_ESCROW_INVALID: 'the hierarchy escrow record is malformed, made for another key, or does not decrypt',
  KEYS_HIERARCHY_LOCKED: 'an owner or lockout operation needs the hierarchy authorisation, which is escrowed to the OEM only',
  KEYS_KEY_MISMATCH: 'the imported key is not the certified one (derived public key ≠ certificate, or the proof signature fails)',
  KEYS_NOT_ARMED: 'contract key not armed (not needed by this command)',
  KEYS_NOT_BOOTED: 'no verification ticket for this release: measured boot did not succeed',
  KEYS_NOT_PROVISIONED: 'the TPM key hierarchy is not provisioned (no record or storage-key password)',
  KEYS_NO_CONTRACT: 'empty contract certificate chain',
  KEYS_NO_LOG_KEY: 'no security-log key in the TPM yet (created after the first good boot by evcc tpm provision)',
  KEYS_NO_CONTRACT_KEY: 'no contract key installed',
  KEYS_NO_PROVISIONING_KEY: 'OEM provisioning key not created yet (run evcc tpm provision after the first good boot)',
  KEYS_PLATFORM_ENABLED: 'the platform hierarchy is still enabled after TPM2_HierarchyControl',
  KEYS_PROVISION_CONFLICT: 'provisioning record exists but the TPM lacks its keys (TPM cleared?): refusing to re-provision over it',
  KEYS_ATTESTATION_KEY_MISSING: 'no attestation key, or its blob is not the provisioned one (run evcc tpm provision)',
  KEYS_LINK_SECRET_MISSING: 'the sealed OEM link secret is missing, not the provisioned one, or of the wrong size',
  KEYS_RUNTIME_SECRET_DESTROYED: 'the runtime secret was already destroyed',
  KEYS_RUNTIME_SECRET_MALFORMED: 'the runtime secret does not have the expected length',
  KEYS_RUNTIME_SECRET_MISSING: 'no sealed runtime secret, or it does not match the provisioning record',
  KEYS_SELFTEST_FAILED: 'a TPM key’s self-test signature did not verify',
  KEYS_SIGNATURE_MALFORMED: 'a malformed ECDSA signature',
  KEYS_TRUST_UNAVAILABLE: 'neither the full nor the degraded vehicle trust could be opened (details.reason = the underlying code)',
  KEYS_WRONG_VEHICLE: 'the import blob was wrapped for another storage key',

  // ── Keys: OEM-signed state policies
  POLICY_FOREIGN_KEY: 'signed policy names a key that is not the provisioned OEM policy key',
  POLICY_MALFORMED: 'a signed state policy does not parse',
  POLICY_SIGNATURE_INVALID: 'signed policy signature does not verify with the OEM policy key',

  // ── Keys: contract certificate installation
  CONTRACT_CHAIN_INVALID: 'the contract chain does not validate to an MO or V2G root. details.cause = the PKI_* code',
  CONTRACT_CPS_CHAIN_INVALID: 'the CPS chain does not validate to an installed V2G root. details.cause = the PKI_* code',
  CONTRACT_DECRYPT_FAILED: 'the transported contract key could not be recovered (TPM refused the ECDH or the duplicate, or no P-256 key)',
  CONTRACT_EMAID_MISMATCH: 'the eMAID of the installation response is not the contract certificate’s',
  CONTRACT_IMPORT_FAILED: 'the TPM refused the import itself (state policy, storage key). details.cause / details.rc',
  CONTRACT_KEY_MISMATCH: 'the transported key is not the contract certificate’s key',
  CONTRACT_RESPONSE_MALFORMED: 'a mandatory element is missing or not what the schema says (hex, Ids, point length)',
  CONTRACT_SIGNATURE_INVALID: 'no header signature, a digest or ECDSA failure, or a signature that does not cover the four signed elements',

  // ── OTA: OEM backend link and root-CA fetch
  OTA_ANSWER_MALFORMED: 'the backend answer is not UTF-8 JSON of the expected shape',
  OTA_ANSWER_OVERSIZED: 'the backend answer exceeds the size cap',
  OTA_ANSWER_REPLAYED: 'the answer repeats a request already completed, or carries a nonce other than the one we sent',
  OTA_ANSWER_SIGNATURE_INVALID: 'the signature of the backend answer does not verify',
  OTA_ANSWER_UNKNOWN_REQUEST: 'the answer’s request id is none of ours',
  OTA_ANSWER_UNTRUSTED_SIGNER: 'the answer names a signing key other than the OEM backend key installed at production',
  OTA_BACKEND_KEY_MISSING: 'no OEM backend verification key installed at production: nothing from the backend can be trusted',
  OTA_BACKEND_SILENT: 'the session was up but no valid answer arrived within the budget',
  OTA_BROKER_REFUSED: 'the broker refused our subscribe or publish (ACL: the link identity does not own the topic)',
  OTA_BROKER_UNREACHABLE: 'no MQTT session to the broker came up within the budget',
  OTA_REQUEST_DENIED: 'signed answer: the backend refused the request (unknown or unauthorised vehicle)',
  OTA_ROOT_DOES_NOT_ANCHOR: 'a valid root, but not the anchor of the chain the SECC presented',
  OTA_ROOT_NOT_CA: 'the certificate is not a CA certificate (basicConstraints cA missing or false)',
  OTA_ROOT_NOT_FOUND: 'signed answer: the Root Certificate Pool has no root for that issuer / key id',
  OTA_ROOT_NOT_SELF_SIGNED: 'the certificate is not self-signed (issuer ≠ subject or its own key does not verify it)',
  OTA_ROOT_PROFILE: 'other V2G root profile violations: algorithm, key usage, validity period, key identifier',
  OTA_ROOT_UNAVAILABLE: 'the unknown-root path gave up (cause attached); the session falls back as configured, never to plain TCP',

  // ── OTA: remote attestation (firmware/ota/attestation.ts, deploy/oem-backend/attestation.ts)
  ATTEST_MESSAGE_MALFORMED: 'an attestation hello, challenge or quote message is not JSON of the expected shape or exceeds its cap',
  ATTEST_QUOTE_MALFORMED: 'the quoted TPMS_ATTEST is not a TPM-generated quote structure of the expected layout',
  ATTEST_SIGNATURE_INVALID: 'the quote does not verify with the attestation key registered for that vehicle (another vehicle’s key, or forged)',
  ATTEST_NONCE_UNKNOWN: 'a quote for no open challenge: replayed, already answered, or unsolicited',
  ATTEST_NONCE_MISMATCH: 'the nonce of the quote (message or signed structure) is not its challenge’s',
  ATTEST_NONCE_EXPIRED: 'the quote arrived after its challenge expired',
  ATTEST_PCR_DIGEST_MISMATCH: 'the quote selects other PCRs than asked, or the PCR values sent do not match its digest',
  ATTEST_VEHICLE_UNKNOWN: 'no attestation key is registered for the vehicle',
  ATTEST_KEY_NOT_RESTRICTED: 'registration refused: the key is not a restricted, TPM-bound P-256 signing key',
  ATTEST_KEY_CONFLICT: 'registration refused: the vehicle is registered with another attestation key',
  ATTEST_TRUSTED: 'verdict: PCR 14 is the measurement of a release the OEM signed',
  ATTEST_EVENT_LOG_MISMATCH: 'verdict tampered: the event log does not parse or its replay is not the quoted PCR 14',
  ATTEST_PCR_UNEXPECTED: 'verdict tampered: PCR 14 holds other than exactly one root file system measurement',
  ATTEST_ROOTFS_NOT_RELEASED: 'verdict tampered: the root file system that booted is not the one of the signed release the vehicle claims',
  ATTEST_RELEASE_UNKNOWN: 'verdict unknown release: the measured root file system is no release the OEM signed for this backend',
  ATTEST_NOT_ANSWERING: 'verdict not answering: no valid answer to the attestation challenge before it expired',

  // ── Session: SupportedAppProtocol handshake
  APPHAND_CHANNEL_CLOSED: 'the channel closed before SupportedAppProtocolRes arrived',
  APPHAND_INVALID_RESPONSE: 'SupportedAppProtocolRes does not decode, or chose a SchemaID that was not offered',
  APPHAND_NO_COMMON_PROTOCOL: 'the SECC supports none of the offered protocols',
  APPHAND_TIMEOUT: 'no SupportedAppProtocolRes within V2G_EVCC_Msg_Timeout',

  // ── Session engine (codes with no protocol module yet, and the engine’s own)
  SESSION_CHANNEL_CLOSED: 'the SECC closed the channel (TCP reset / FIN), never a stop in order',
  SESSION_COMPLETED: 'the session completed: a normal end',
  SESSION_DECODE_FAILED: 'a response does not decode before a protocol module was chosen',
  SESSION_EFFECT_FAILED: 'a vehicle-side effect (S2, contactors …) failed',
  SESSION_EFFECT_TIMEOUT: 'no answer from the vehicle side within the effect budget',
  SESSION_EFFECT_UNAVAILABLE: 'this vehicle has no actuator for the requested effect',
  SESSION_ENCODE_FAILED: 'a request does not encode to EXI',
  SESSION_INTERNAL: 'session engine fault (e.g. the protocol module has no such step)',
  SESSION_INVALID_RESPONSE: 'a response field is missing or invalid before a protocol module was chosen',
  SESSION_RESPONSE_FAILED: 'a FAILED* ResponseCode before a protocol module was chosen',
  SESSION_SESSION_ID_MISMATCH: 'a response carries another SessionID before a protocol module was chosen',
  SESSION_STOP_REQUESTED: 'a stop was requested by the caller: a normal end',
  SESSION_TIMEOUT: 'no response within V2G_EVCC_Msg_Timeout before a protocol module was chosen',
  SESSION_UNEXPECTED_MESSAGE: 'an unexpected or unsolicited message before a protocol module was chosen',
  SESSION_VALUE_RANGE: 'a physical value is not finite or does not fit an ISO 15118 PhysicalValue',

  // ── Session: ISO 15118-2
  ISO2_CABLE_CHECK_TIMEOUT: 'CableCheck did not finish with EVSEIsolationStatus Valid/Warning within V2G_EVCC_CableCheck_Timeout',
  ISO2_DECODE_FAILED: 'the response is not ISO 15118-2 EXI',
  ISO2_ENERGY_TRANSFER_MODE_UNSUPPORTED: 'none of the configured energy transfer modes is among the SECC’s SupportedEnergyTransferMode',
  ISO2_EVSE_EMERGENCY_SHUTDOWN: 'EVSEStatusCode=EVSE_EmergencyShutdown (contactors are opened at once, then the stop path runs)',
  ISO2_EVSE_MALFUNCTION: 'EVSEStatusCode=EVSE_Malfunction',
  ISO2_EVSE_OVERVOLTAGE: 'EVSEPresentVoltage above the EV’s maximum voltage (contactors opened at once)',
  ISO2_EVSE_RCD: 'AC: RCD=1, the charger’s residual current device tripped',
  ISO2_EVSE_SHUTDOWN: 'EVSEStatusCode=EVSE_Shutdown: the charger ends the session (e.g. stop button at the charger): a normal end',
  ISO2_EVSE_STOP_CHARGING: 'EVSENotification=StopCharging: the charger asks the EV to stop: a normal end',
  ISO2_EVSE_UTILITY_INTERRUPT: 'EVSEStatusCode=EVSE_UtilityInterruptEvent: the grid operator interrupts: a normal end',
  ISO2_EV_ERROR: 'the vehicle reports an error (EVErrorCode other than NO_ERROR / NoData) during energy transfer',
  ISO2_INVALID_RESPONSE: 'a mandatory ISO 15118-2 response field is missing or invalid (details: message, field)',
  ISO2_ISOLATION_FAULT: 'CableCheck finished with EVSEIsolationStatus=Fault: the cable is not safe to energise',
  ISO2_NO_PAYMENT_OPTION: 'no payment option both sides can use (e.g. the SECC offers Contract only, and PnC is not possible here)',
  ISO2_ONGOING_TIMEOUT: 'EVSEProcessing stayed Ongoing (Authorization, ChargeParameterDiscovery) longer than V2G_EVCC_Ongoing_Timeout',
  ISO2_PRECHARGE_TIMEOUT: 'the EVSE output did not come within the PreCharge tolerance of the battery voltage within V2G_EVCC_PreCharge_Timeout',
  ISO2_RESPONSE_FAILED: 'an ISO 15118-2 response with a FAILED* ResponseCode (details: message, responseCode)',
  ISO2_RESPONSE_HEADER_UNAVAILABLE: 'the engine handed the step no response header (an engine fault, never a charger fault)',
  ISO2_SESSION_ID_INVALID: 'SessionSetupRes assigned no usable SessionID (absent or all-zero)',
  ISO2_SESSION_ID_MISMATCH: 'an ISO 15118-2 response carries another SessionID than the one SessionSetupRes gave',
  ISO2_TIMEOUT: 'no ISO 15118-2 response within V2G_EVCC_Msg_Timeout (details: message, timer)',
  ISO2_UNEXPECTED_MESSAGE: 'another message than the awaited ISO 15118-2 response, or an unsolicited one',

  // ── Session: DIN SPEC 70121
  DIN_CABLE_CHECK_TIMEOUT: 'CableCheck did not finish (Finished, isolation not Invalid) within V2G_EVCC_CableCheck_Timeout',
  DIN_DECODE_FAILED: 'the response is not DIN EXI',
  DIN_EVSE_EMERGENCY_SHUTDOWN: 'EVSEStatusCode=EVSE_EmergencyShutdown',
  DIN_EVSE_MALFUNCTION: 'EVSEStatusCode=EVSE_Malfunction (ccs32clara: seen when a voltage limit was hit)',
  DIN_EVSE_OVERVOLTAGE: 'EVSEPresentVoltage above the EV’s maximum voltage (+ `overvoltageMarginV`)',
  DIN_EVSE_SHUTDOWN: 'EVSEStatusCode=EVSE_Shutdown: the charger ends the session (stop button at a Compleo charger): a normal end',
  DIN_EVSE_STOP_CHARGING: 'EVSENotification=StopCharging: the charger asks the EV to stop: a normal end',
  DIN_EVSE_UTILITY_INTERRUPT: 'EVSEStatusCode=EVSE_UtilityInterruptEvent: the grid operator interrupts: a normal end',
  DIN_EV_CHARGING_COMPLETE: 'the vehicle is full (ChargingComplete): a normal end',
  DIN_EV_ERROR: 'the vehicle reports an error (EVErrorCode other than NO_ERROR / NoData)',
  DIN_EV_STOP_REQUESTED: 'the driver or the vehicle asks to stop (a pause request too: DIN SPEC 70121 has no pause): a normal end',
  DIN_INVALID_RESPONSE: 'a DIN response field the state relies on is missing or invalid (details: message, field)',
  DIN_ISOLATION_FAULT: 'EVSEIsolationStatus=Fault: the cable is not safe to energise',
  DIN_ONGOING_TIMEOUT: 'EVSEProcessing stayed Ongoing (ContractAuthentication, ChargeParameterDiscovery) beyond V2G_EVCC_Ongoing_Timeout',
  DIN_PRECHARGE_TIMEOUT: 'the EVSE output did not come within the tolerance of the battery voltage within V2G_EVCC_PreCharge_Timeout',
  DIN_READY_TO_CHARGE_TIMEOUT: 'plug-in to PowerDeliveryReq(ReadyToChargeState=true) took longer than V2G_EVCC_ReadyToCharge_Timeout',
  DIN_RESPONSE_FAILED: 'a DIN response with a FAILED* ResponseCode (details: message, responseCode)',
  DIN_SESSION_ID_INVALID: 'SessionSetupRes assigned no usable SessionID (header absent, not hex, or all-zero)',
  DIN_SESSION_ID_MISMATCH: 'a DIN response carries another SessionID than the one SessionSetupRes gave',
  DIN_TIMEOUT: 'no DIN response within V2G_EVCC_Msg_Timeout (details: message, timer)',
  DIN_UNEXPECTED_MESSAGE: 'another message than the awaited DIN response, or an unsolicited one',

  // ── Orchestrator (firmware/evcc.ts, firmware/vehicle)
  EVCC_NO_TCP: 'the SECC offers no TLS and this vehicle has no plain-TCP connector',
  EVCC_SETUP_TIMEOUT: 'V2G_EVCC_CommunicationSetup_Timeout expired before the session was set up',
  EVCC_STAGE_FAILED: 'an orchestrator stage failed (e.g. a paused session without a SessionID cannot be resumed)',
  EVCC_TRUST_UNAVAILABLE: 'no verified certificate store: a contract cannot be validated',

  // ── Per-session capture (hal/capture, firmware/capture)
  CAPTURE_FAILED: 'the session capture (folder, pcapng, tap) cannot be created or written; the session goes on without it',
  CAPTURE_INVALID: 'a session folder or its pcapng capture cannot be read',
  CAPTURE_KEYLOG_REFUSED: 'a TLS key log was asked for by a production config without capture.allowKeyLogInProduction',

  // ── Security log (firmware/log/security-log.ts, evcc log)
  LOG_ENTRY_MALFORMED: 'a security-log line is not an evcc-security-log/1 entry, or the first entry is not the genesis entry',
  LOG_TRUNCATED: 'the security log is empty or its last line is cut short',
  LOG_SEQ_OUT_OF_ORDER: 'a security-log entry is missing, moved or duplicated (its seq is not the next one)',
  LOG_ENTRY_ALTERED: 'a security-log entry does not match its hash (edited)',
  LOG_CHAIN_BROKEN: 'a security-log entry does not chain to the one before it (inserted, removed or replaced), or an upload does not extend the stored head',
  LOG_CHECKPOINT_INVALID: 'a security-log checkpoint signature does not verify with the log key (entries altered or the checkpoint forged)',
  LOG_KEY_INVALID: 'the security-log public key is not an EC P-256 PEM public key',
  LOG_DETAIL_INVALID: 'a security-log event detail holds a value JSON cannot carry exactly',
  LOG_VEHICLE_UNKNOWN: 'OEM backend: a security-log upload from a vehicle whose log key is not registered',
  LOG_UPLOAD_REFUSED: 'the OEM backend refused a security-log upload (details.cause: its code, details.seq: the first bad entry), or its answer is malformed',
  LOG_NO_SIGNER: 'a security-log checkpoint was written by a process without the log key (unsigned)',

  // ── Encrypted session history (firmware/log/session-history.ts)
  HISTORY_UNAVAILABLE: 'the session history key exists only in an OEM-approved software state: a degraded vehicle can neither read nor add to the history',
  HISTORY_RECORD_INVALID: 'a session-history record does not authenticate (altered, moved, or written under another key) or is not a record',

  // ── sim: charger scenarios
  SIM_SCENARIO_INVALID: 'sim: a charger scenario is invalid',
  SIM_SCENARIO_JSON: 'sim: a charger scenario file is not JSON',
  SIM_SCENARIO_NOT_FOUND: 'sim: no charger scenario of that name',

  // ── sim: certificate provisioning service
  CPS_NO_STORAGE_KEY: 'sim CPS: direct import asked for, but the vehicle’s storage key is unknown',
  CPS_REQUEST_MALFORMED: 'sim CPS: an installation request field is malformed',
  CPS_REQUEST_SIGNATURE_INVALID: 'sim CPS: the installation request signature is refused',

  // ── deploy: OEM backend
  OEM_BROKER_LISTEN_FAILED: 'the embedded OEM broker cannot listen on its host and port',
  OEM_RECORD_LOCK_TIMEOUT: 'a backend record (job, vehicle, attestation state) stayed locked by another instance longer than the lock wait',

  // ── deploy: live dashboard
  DASHBOARD_LISTEN_FAILED: 'the dashboard cannot listen on its host and port',
} as const satisfies Record<string, string>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isRegisteredCode(c: string): c is ErrorCode {
  return Object.hasOwn(ERROR_CODES, c);
}
