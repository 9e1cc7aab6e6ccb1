import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { EvccError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import { AttestationRegistry, AttestationService } from '../../deploy/oem-backend/attestation.ts';
import type { Clock } from '../../hal/clock/types.ts';
import { MqttJsConnector } from '../../hal/mqtt/mqtt-js.ts';
import type { MqttTlsIdentity } from '../../hal/mqtt/types.ts';

/**
 * `evcc oem-backend attestation …`: the production and operator side of remote attestation
 * (deploy/oem-backend/attestation.ts) — register a vehicle's attestation key from its provisioning export, add the
 * releases the OEM signed, and query the persisted states. `evcc oem-backend serve --attestation-dir` runs the verifier.
 */
function print(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

async function readInput(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new EvccError('CONFIG_INVALID', `cannot read ${path}`, { path }, { cause: err });
  }
}

export function registerAttestationCommands(oemBackend: Command): void {
  const cmd = oemBackend.command('attestation').description('remote attestation: registered attestation keys, signed releases, vehicle states');
  cmd.command('register')
    .description('register a vehicle\'s attestation key from its provisioning export (attestation.tpm2b_pub)')
    .requiredOption('--dir <dir>', 'attestation registry directory')
    .requiredOption('--vehicle-id <id>', 'vehicle id (its link certificate CN)')
    .requiredOption('--export <dir>', 'the vehicle\'s `evcc tpm provision --export` directory')
    .action(async (o: { dir: string; vehicleId: string; export: string }) => {
      const reg = await AttestationRegistry.open(o.dir);
      const v = await reg.registerVehicle(o.vehicleId, new Uint8Array(await readInput(join(o.export, 'attestation.tpm2b_pub'))));
      print({ vehicleId: v.vehicleId, akName: v.akName, registeredAt: v.registeredAt });
    });
  cmd.command('oem-policy-key <file>')
    .description('set the OEM policy public key (PEM) that every added release must verify with')
    .requiredOption('--dir <dir>', 'attestation registry directory')
    .action(async (file: string, o: { dir: string }) => {
      const pem = (await readInput(file)).toString('utf8');
      if (!/BEGIN PUBLIC KEY/.test(pem)) throw new EvccError('CONFIG_INVALID', `${file} is not a PEM public key`);
      await (await AttestationRegistry.open(o.dir)).setOemPolicyKey(pem);
      print({ oemPolicyKey: file });
    });
  cmd.command('add-release <policy...>')
    .description('add releases the OEM signed (signed state policy JSON, as `evcc oem release` writes it)')
    .requiredOption('--dir <dir>', 'attestation registry directory')
    .action(async (files: string[], o: { dir: string }) => {
      const reg = await AttestationRegistry.open(o.dir);
      const added = [];
      for (const f of files) {
        let raw: unknown;
        try {
          raw = JSON.parse((await readInput(f)).toString('utf8'));
        } catch (err) {
          if (err instanceof EvccError) throw err;
          throw new EvccError('POLICY_MALFORMED', `${f} is not JSON`, { path: f }, { cause: err });
        }
        const p = await reg.addRelease(raw);
        added.push({ version: p.version, pcr14: p.pcrs.value });
      }
      print({ added });
    });
  cmd.command('status')
    .description('the persisted attestation state of one vehicle, or of all registered vehicles')
    .requiredOption('--dir <dir>', 'attestation registry directory')
    .option('--vehicle-id <id>', 'one vehicle')
    .action(async (o: { dir: string; vehicleId?: string }) => {
      const reg = await AttestationRegistry.open(o.dir);
      const ids = o.vehicleId ? [o.vehicleId] : await reg.vehicles();
      const states = [];
      for (const id of ids) {
        const s = await reg.state(id);
        if (!s) throw new EvccError('ATTEST_VEHICLE_UNKNOWN', `vehicle ${id} is not registered for attestation`, { vehicleId: id });
        const { challenge, ...rest } = s;
        states.push({ ...rest, challengeOpen: challenge !== undefined });
      }
      print(o.vehicleId ? states[0] : states);
    });
}

/** The verifier next to the root-CA service (`serve --attestation-dir`). */
export async function startAttestationService(o: {
  dir: string; broker: string; protocolVersion: 4 | 5; tls?: MqttTlsIdentity; shareGroup: string | false; clock: Clock; log: Logger; periodSeconds: number;
}): Promise<AttestationService> {
  const registry = await AttestationRegistry.open(o.dir);
  const service = new AttestationService({
    connector: new MqttJsConnector(), url: o.broker, protocolVersion: o.protocolVersion, ...(o.tls ? { tls: o.tls } : {}), shareGroup: o.shareGroup,
    registry, clock: o.clock, log: o.log, periodMs: o.periodSeconds * 1000,
  });
  await service.start();
  return service;
}
