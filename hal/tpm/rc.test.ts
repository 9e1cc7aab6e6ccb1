import { describe, expect, it } from 'vitest';
import { codeFor, decodeRc, tpmErrorFromTool } from './rc.ts';

describe('TPM response codes', () => {
  it('decodes format-one codes with parameter, handle and session numbers', () => {
    expect(decodeRc(0x1c4)).toEqual({ rc: 0x1c4, base: 0x084, parameter: 1 });
    expect(decodeRc(0x4c4)).toEqual({ rc: 0x4c4, base: 0x084, parameter: 4 });
    expect(decodeRc(0x98e)).toEqual({ rc: 0x98e, base: 0x08e, session: 1 });
    expect(decodeRc(0x182)).toEqual({ rc: 0x182, base: 0x082, handle: 1 });
    expect(decodeRc(0x921)).toEqual({ rc: 0x921, base: 0x921 });
    expect(decodeRc(0x12f)).toEqual({ rc: 0x12f, base: 0x12f });
  });
  it('maps every reference case (TPM.md §5) to its typed code', () => {
    const cases: [number, string, string][] = [
      [0x14a, 'tpm2_nvread', 'TPM_NV_UNINITIALIZED'], [0x98e, 'tpm2_load', 'TPM_AUTH_FAIL'], [0x12f, 'tpm2_load', 'TPM_AUTH_UNAVAILABLE'],
      [0x99d, 'tpm2_load', 'TPM_POLICY_FAIL'], [0x2db, 'tpm2_verifysignature', 'TPM_SIGNATURE_INVALID'],
      [0x4c4, 'tpm2_policyauthorize', 'TPM_TICKET_INVALID'], [0x182, 'tpm2_ecdhzgen', 'TPM_KEY_ATTRIBUTES'],
      [0x19c, 'tpm2_sign', 'TPM_KEY_USE'], [0x126, 'tpm2_policynv', 'TPM_POLICY_ROLLBACK'],
      [0x1c4, 'tpm2_policyauthorize', 'TPM_POLICY_NOT_APPROVED'], [0x1c4, 'tpm2_policypcr', 'TPM_POLICY_PCR'],
      [0x1df, 'tpm2_sign', 'TPM_CONTEXT_INVALID'], [0x3df, 'tpm2_import', 'TPM_BLOB_INTEGRITY'], [0x128, 'tpm2_sign', 'TPM_PCR_CHANGED'], [0x921, 'tpm2_load', 'TPM_LOCKOUT'],
      [0x9a2, 'tpm2_nvdefine', 'TPM_BAD_AUTH'], [0x185, 'tpm2_hierarchycontrol', 'TPM_HIERARCHY_DISABLED'],
    ];
    for (const [rc, cmd, code] of cases) expect(codeFor(rc, cmd), `${rc.toString(16)} ${cmd}`).toBe(code);
  });
  it('parses tpm2-tools 5.4 stderr', () => {
    const e = tpmErrorFromTool('tpm2_policynv', 1,
      'WARNING:esys:src/tss2-esys/api/Esys_PolicyNV.c:309:Esys_PolicyNV_Finish() Received TPM Error\nERROR: Esys_PolicyNV(0x126) - tpm:error(2.0): policy failure in math operation or an invalid authPolicy value\n');
    expect(e.code).toBe('TPM_POLICY_ROLLBACK');
    expect(e.details.rc).toBe('0x126');
    expect(tpmErrorFromTool('tpm2_sign', 1, 'ERROR: something else').code).toBe('TPM_TOOL_FAILED');
    // tpm2_nvincrement prints only ESYS's line (owner auth set, none given)
    const esysOnly = tpmErrorFromTool('tpm2_nvincrement', 1, 'WARNING:esys:src/tss2-esys/api/Esys_NV_Increment.c:307:Esys_NV_Increment_Finish() Received TPM Error \n'
      + 'ERROR:esys:src/tss2-esys/api/Esys_NV_Increment.c:109:Esys_NV_Increment() Esys Finish ErrorCode (0x000009a2) \nERROR: Failed to increment NV counter at index 0x1800101\n');
    expect({ code: esysOnly.code, rc: esysOnly.details.rc }).toEqual({ code: 'TPM_BAD_AUTH', rc: '0x9A2' });
    // a TSS layer's code (not the TPM's) is no TPM response code
    expect(tpmErrorFromTool('tpm2_nvincrement', 1, 'ERROR:esys:x.c:1:Esys_NV_Increment() Esys Finish ErrorCode (0x00070018) \n').code).toBe('TPM_TOOL_FAILED');
    const unreachable = 'ERROR:tcti:src/tss2-tcti/tcti-device.c:452:Tss2_Tcti_Device_Init() Failed to open specified TCTI device file /dev/tpmrm0: No such file or directory \n'
      + 'ERROR:tcti:src/tss2-tcti/tctildr.c:428:Tss2_TctiLdr_Initialize_Ex() Failed to instantiate TCTI \nERROR: Could not load tcti, got: "device:/dev/tpmrm0"\n';
    expect(tpmErrorFromTool('tpm2_pcrread', 1, unreachable).code).toBe('TPM_UNREACHABLE');
  });
});
