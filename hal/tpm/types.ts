/**
 * TPM 2.0 hardware abstraction (ARCHITECTURE.md §2). One real implementation drives tpm2-tools 5.4 through
 * execa (`tpm2-tools.ts`, TCTI `device:/dev/tpmrm0` on the Pi, `swtpm:host=…,port=…` on the bench); the
 * simulated side is swtpm itself (`swtpm.ts`), not a fake: every refusal comes from a real TPM implementation.
 *
 * Each method is one TPM operation, typically one tool process. Without a resource manager (direct TCTI, /dev/tpm0)
 * the transient objects and sessions the tools leave behind (TPM.md pitfall 2/3) are flushed by the implementation,
 * also on failure, and a failure invalidates every open PolicySession. Behind a resource manager (`/dev/tpmrm0`,
 * tpm2-abrmd: handles per connection, README.md) a failure invalidates only the sessions the failing command used.
 * Secrets are passed in memory and never written to a file in clear.
 */

/** Stable codes of TPM failures (EvccError.code); details carry `rc` (hex) and `command` (tool). */
export type TpmErrorCode =
  | 'TPM_AUTH_FAIL' //           0x98E-type: wrong authValue (counts against the dictionary-attack counter)
  | 'TPM_AUTH_UNAVAILABLE' //    0x12F: no usable authorisation (policy-only object used with a password/none)
  | 'TPM_BAD_AUTH' //            0x9A2-type: wrong authorisation of an entity without DA protection (owner, endorsement)
  | 'TPM_HIERARCHY_DISABLED' //  0x185-type: the hierarchy is disabled (platform after `evcc boot lock-platform`)
  | 'TPM_POLICY_FAIL' //         0x99D-type: session digest is not the object's authPolicy
  | 'TPM_POLICY_PCR' //          0x1C4 at PolicyPCR: PCR value differs from the one given
  | 'TPM_POLICY_NOT_APPROVED' // 0x1C4 at PolicyAuthorize: the session state (PCR, version) is not what the OEM signed
  | 'TPM_POLICY_ROLLBACK' //     0x126 at PolicyNV: firmware version lower than the anti-rollback counter
  | 'TPM_PCR_CHANGED' //         0x128: PCRs changed after the policy session was armed
  | 'TPM_TICKET_INVALID' //      0x4C4-type at PolicyAuthorize: ticket not issued for this key/policy
  | 'TPM_SIGNATURE_INVALID' //   0x2DB-type: signature does not verify
  | 'TPM_KEY_ATTRIBUTES' //      0x182-type: key used for an operation its attributes forbid (restricted decrypt)
  | 'TPM_KEY_USE' //             0x19C-type: key type not usable for the operation (storage key signing)
  | 'TPM_CONTEXT_INVALID' //     0x1DF-type: saved context from before a TPM Reset/Restart (integrity check)
  | 'TPM_BLOB_INTEGRITY' //      0x9F-type at Load/Import: wrapped blob corrupted or made for another parent
  | 'TPM_NV_UNINITIALIZED' //    0x14A: NV index never written
  | 'TPM_LOCKOUT' //             0x921: dictionary-attack lockout
  | 'TPM_OBJECT_MEMORY' //       0x902: out of object slots (a leak)
  | 'TPM_SESSION_MEMORY' //      0x903: out of session slots (sessions of unclosed key services)
  | 'TPM_SESSION_INVALID' //     session context no longer loadable
  | 'TPM_ERROR' //               any other TPM response code
  | 'TPM_TOOL_FAILED' //         tpm2-tools failed without a TPM response code
  | 'TPM_UNREACHABLE'; //        TCTI could not connect

export type PcrBank = 'sha256';

/** A key the TPM can address: a persistent handle, or a saved context kept by the driver under a logical name. */
export type KeyRef = { readonly persistent: number } | { readonly context: string };

/** TPM2B_PUBLIC + TPM2B_PRIVATE of a key wrapped by its parent (safe to store: only the TPM can unwrap it). */
export interface KeyBlob {
  public: Uint8Array;
  private: Uint8Array;
}

export interface PublicInfo {
  /** TPM name (nameAlg || H(public area)). */
  name: Uint8Array;
  /** TPM2B_PUBLIC. */
  public: Uint8Array;
}

/** Handle of a policy (or trial) session; opaque. Invalid after `flushSession` or after any failed TPM call. */
export interface PolicySession {
  readonly id: string;
  readonly trial: boolean;
}

/** How an object's use is authorised. */
export type Auth =
  | { kind: 'empty' }
  /** Plain password session (HMAC); only for objects with userWithAuth. */
  | { kind: 'password'; secret: Uint8Array }
  /** Policy session; `secret` is the object's authValue when its policy ends in PolicyAuthValue. */
  | { kind: 'policy'; session: PolicySession; secret?: Uint8Array };

/** One policy assertion, replayed in the order the policy was computed (TPM.md pitfall 7). */
export type PolicyStep =
  | { kind: 'pcr'; bank: PcrBank; pcrs: number[]; expectedValue?: Uint8Array }
  | { kind: 'nv'; index: number; operandB: Uint8Array; operation: 'ule' }
  | { kind: 'authorize'; approvedPolicy: Uint8Array; policyRef: Uint8Array; keyName: Uint8Array; ticket?: Uint8Array }
  | { kind: 'authValue' }
  /** TPM2_PolicyCommandCode: the session authorises only this command (e.g. 0x134 TPM2_CC_NV_Increment). */
  | { kind: 'commandCode'; code: number };

/** A permanent hierarchy whose authorisation provisioning sets (TPM.md §8). */
export type Hierarchy = 'owner' | 'endorsement' | 'lockout';

/** TPM2_PT_PERMANENT and TPM2_PT_STARTUP_CLEAR as far as the hierarchy set-up is concerned. */
export interface HierarchyState {
  ownerAuthSet: boolean;
  endorsementAuthSet: boolean;
  lockoutAuthSet: boolean;
  /** Platform hierarchy enabled: SET again by every TPM2_Startup, so it is disabled at every boot. */
  phEnable: boolean;
  shEnable: boolean;
  ehEnable: boolean;
  inLockout: boolean;
}

/**
 * A sealed data object (TPM2_Create of a keyedhash object with sign and decrypt clear): up to 128 bytes the TPM
 * only gives back through TPM2_Unseal under the object's authorisation. The data comes in memory (tool stdin),
 * never through a file or the command line.
 */
export interface SealTemplate {
  data: Uint8Array;
  /** tpm2-tools attribute list; default 'fixedtpm|fixedparent' (no userwithauth: policy-only use). */
  attributes?: string;
  authPolicy?: Uint8Array;
}

export interface KeyTemplate {
  alg: 'ecc256' | 'rsa2048';
  /** tpm2-tools attribute list, e.g. 'fixedtpm|fixedparent|sensitivedataorigin|sign'. */
  attributes: string;
  /**
   * e.g. 'ecdsa-sha256' for sign-only keys, 'null' for keys with both sign and decrypt (the TPM requires a null scheme
   * then; TPM2_Sign picks ECDSA-SHA256 at use), 'null:aes128cfb' for storage keys.
   */
  scheme: string;
  authValue?: Uint8Array;
  authPolicy?: Uint8Array;
}

/** Parameters of a salted policy session: the salt key and its expected name (TPM.md pitfall 5). */
export interface SaltKey {
  handle: number;
  name: Uint8Array;
}

export type ShutdownType = 'clear' | 'state';

export interface DictionaryAttackParameters {
  /** Authorisation failures before lockout. */
  maxTries: number;
  /** Seconds after which one failure is forgotten. */
  recoveryTime: number;
  /** Seconds before a lockout-auth failure may be retried. */
  lockoutRecovery: number;
}

export interface DictionaryAttackState extends DictionaryAttackParameters {
  counter: number;
  inLockout: boolean;
}

export interface Tpm {
  readonly tcti: string;
  /**
   * A resource manager virtualises handles per connection (`device:/dev/tpmrm0`, `tabrmd:`): a tool's transient
   * objects go with its connection and one failing tool no longer requires flushing every session on the TPM.
   */
  readonly resourceManager: boolean;
  /** Number of tpm2-tools processes spawned so far (bench: processes on the critical path). */
  readonly spawnCount: number;

  handles(kind: 'persistent' | 'nv-index' | 'transient' | 'loaded-session' | 'saved-session'): Promise<number[]>;
  lockoutCounter(): Promise<number>;
  /** Dictionary-attack state and parameters (TPM2_PT_LOCKOUT_COUNTER, MAX_AUTH_FAIL, LOCKOUT_INTERVAL/RECOVERY). */
  dictionaryAttackState(): Promise<DictionaryAttackState>;
  /** TPM2_DictionaryAttackParameters (lockout hierarchy; empty lockout auth on a fresh TPM unless `lockoutAuth`). */
  setDictionaryAttackParameters(p: DictionaryAttackParameters, lockoutAuth?: Uint8Array): Promise<void>;
  /** TPM2_DictionaryAttackLockReset (empty lockout auth unless given; a wrong one locks the lockout hierarchy out). */
  resetDictionaryLockout(lockoutAuth?: Uint8Array): Promise<void>;

  /** Hierarchy authorisation and enable flags (tpm2_getcap properties-variable). */
  hierarchyState(): Promise<HierarchyState>;
  /** TPM2_HierarchyChangeAuth from `oldAuth` (default empty) to `newAuth`; the new value reaches the tool by stdin only. */
  changeHierarchyAuth(hierarchy: Hierarchy, newAuth: Uint8Array, oldAuth?: Uint8Array): Promise<void>;
  /** TPM2_SetPrimaryPolicy of the owner hierarchy (owner auth `auth`, default empty): owner use by a policy session. */
  setOwnerPolicy(policy: Uint8Array, auth?: Uint8Array): Promise<void>;
  /** TPM2_HierarchyControl(platform, phEnable, NO): until the next TPM2_Startup (empty platform auth after Startup). */
  disablePlatformHierarchy(): Promise<void>;

  /** Owner storage primary (ECC P-256, AES-128-CFB), persisted at `handle`. */
  createStoragePrimary(handle: number): Promise<PublicInfo>;
  readPublic(key: KeyRef): Promise<PublicInfo>;
  create(parent: KeyRef, parentAuth: Auth, template: KeyTemplate): Promise<KeyBlob>;
  /** TPM2_Create of a sealed data object under `parent`; the data reaches the tool through stdin only. */
  createSealed(parent: KeyRef, parentAuth: Auth, template: SealTemplate): Promise<KeyBlob>;
  /** TPM2_Unseal of a loaded sealed data object; the data comes back through the tool's stdout, never a file. */
  unseal(key: KeyRef, auth: Auth): Promise<Uint8Array>;
  /** Loads a blob; its context is kept under `contextName` (in the run dir) until `forgetContext`. */
  load(parent: KeyRef, parentAuth: Auth, blob: KeyBlob, contextName: string): Promise<KeyRef>;
  hasContext(contextName: string): Promise<boolean>;
  forgetContext(contextName: string): Promise<void>;
  persist(key: KeyRef, handle: number): Promise<void>;
  /** TPM2_Import of a duplicate; returns the TPM2B_PRIVATE now wrapped by `parent`. */
  importDuplicate(parent: KeyRef, parentAuth: Auth, dup: { public: Uint8Array; duplicate: Uint8Array; encryptedSeed: Uint8Array }): Promise<Uint8Array>;

  /**
   * 8-byte NV counter. Default: owner-written (`ownerwrite|ownerread|authread|no_da`, the firmware anti-rollback
   * counter). With `writePolicy`: `policywrite|authread|no_da` — only a policy session whose digest is `writePolicy`
   * may increment it (the certificate store's version counter: policy A, i.e. an OEM-approved state), anyone reads.
   */
  nvDefineCounter(index: number, options?: { writePolicy?: Uint8Array }): Promise<void>;
  /**
   * TPM2_NV_Increment; owner authorisation unless `auth` is given (then the index's own, e.g. its write policy, or
   * with `as: 'owner'` the owner hierarchy's: a policy session satisfying the owner policy once owner auth is set).
   */
  nvIncrement(index: number, auth?: Auth, opts?: { as?: 'owner' | 'index' }): Promise<void>;
  nvReadCounter(index: number): Promise<bigint>;
  nvName(index: number): Promise<Uint8Array>;

  /** Name the TPM gives an external P-256 public key (owner hierarchy, TPM.md pitfall 8). */
  externalKeyName(publicKeyPem: string): Promise<Uint8Array>;
  /** TPM2_VerifySignature with an external key in the owner hierarchy → verification ticket (TPMT_TK_VERIFIED). */
  verifySignature(publicKeyPem: string, message: Uint8Array, signatureDer: Uint8Array): Promise<{ keyName: Uint8Array; ticket: Uint8Array }>;

  pcrRead(bank: PcrBank, pcr: number): Promise<Uint8Array>;
  pcrExtend(bank: PcrBank, pcr: number, digest: Uint8Array): Promise<void>;

  /** False once the session was flushed, by its owner or by a failure recovery of this driver. */
  isSessionLive(session: PolicySession): boolean;
  startPolicySession(salt?: SaltKey): Promise<PolicySession>;
  startTrialSession(): Promise<PolicySession>;
  /** Runs the steps in order; returns the session digest after the last one (trial sessions) or undefined. */
  policy(session: PolicySession, steps: PolicyStep[]): Promise<Uint8Array | undefined>;
  flushSession(session: PolicySession): Promise<void>;

  /** ECDSA-SHA256 over a 32-byte digest; returns DER. The transient copy the tool loads is flushed before the next call. */
  sign(key: KeyRef, auth: Auth, digest: Uint8Array): Promise<Uint8Array>;
  /**
   * TPM2_Quote (attestation): the TPM signs a TPMS_ATTEST over the selected PCRs' digest and `qualifyingData` (the
   * verifier's nonce, ≤ 64 bytes) with a restricted signing key (an unrestricted one could sign a forged TPMS_ATTEST).
   * Returns the TPMS_ATTEST as signed, the ECDSA-SHA256 signature (DER) and the PCR values in ascending order.
   */
  quote(key: KeyRef, auth: Auth, bank: PcrBank, pcrs: number[], qualifyingData: Uint8Array): Promise<{ attest: Uint8Array; signature: Uint8Array; pcrValues: Uint8Array[] }>;
  /** TPM2_ECDH_KeyGen: an ephemeral point against a public key (security tests: restricted-key misuse, TPM.md N08–N10). */
  ecdhKeyGen(key: KeyRef): Promise<{ ephemeralPublic: Uint8Array }>;
  /**
   * TPM2_ECDH_ZGen: the shared point Z = d·Q of the loaded ECC key (unrestricted, `decrypt` set) and the peer
   * point `ephemeralPublic` (both TPM2B_ECC_POINT). Z is a secret — the ISO 15118-2 contract-key transport derives
   * its AES key from Z.x — so it comes back in memory only (never through a file); the caller wipes it. A policy
   * session used here is consumed (tpm2-tools does not keep it): start a new one for the next command.
   */
  ecdhZGen(key: KeyRef, auth: Auth, ephemeralPublic: Uint8Array): Promise<Uint8Array>;
  rsaEncrypt(key: KeyRef, message: Uint8Array): Promise<Uint8Array>;
  rsaDecrypt(key: KeyRef, auth: Auth, ciphertext: Uint8Array): Promise<Uint8Array>;

  /** TPM2_Shutdown: 'clear' before an orderly reboot, 'state' (suspend) makes the next Startup a TPM Restart. */
  shutdown(type: ShutdownType): Promise<void>;
  /**
   * Flushes every transient object and every loaded/saved session (runtime start-up: a crashed predecessor's).
   * Behind a resource manager `-t`/`-l` reach only this tool's own connection, but saved sessions are flushed TPM-wide.
   */
  flushAll(): Promise<void>;
  close(): Promise<void>;
}
