import { readFile } from 'node:fs/promises';
import { Option } from 'commander';
import { EvccError } from '../../core/errors.ts';
import { decodeAny, decodeFragment, encodeAny, encodeFragment, SCHEMA_IDS, type FragmentOf, type SchemaId } from '../../firmware/exi/index.ts';
import { decodeV2gtpPayload, payloadTypeOf } from '../../firmware/exi/v2gtp.ts';
import { decodeDatagram } from '../../firmware/v2gtp/codec.ts';
import type { CommandModule } from './index.ts';

/**
 * `evcc exi decode|encode`: the EXI codec on the command line, for benches and field traces.
 *   evcc exi decode --schema iso2 8098020...        → JSON
 *   evcc exi decode 8098020...                       → picks the schema (0x8001 family) and prints it
 *   evcc exi encode --schema iso2 '{"V2G_Message":…}' (or --file msg.json) → hex
 */
const json = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x), 2);

function hexBytes(hex: string): Uint8Array {
  const clean = hex.replace(/\s+/g, '').replace(/^0x/i, '');
  if (!/^([0-9a-f]{2})*$/i.test(clean)) throw new EvccError('CONFIG_INVALID', 'input is not a hex string');
  return new Uint8Array(Buffer.from(clean, 'hex'));
}

export const registerExi: CommandModule = (program) => {
  const exi = program.command('exi').description('schema-informed EXI codec (appHandshake, ISO 15118-2, DIN 70121, ISO 15118-20, xmldsig)');
  const schemaOption = (): Option => new Option('-s, --schema <id>', 'schema').choices(SCHEMA_IDS);

  exi.command('decode')
    .description('decode an EXI stream given as hex (or a whole V2GTP message, 01fe…); without --schema the schema is picked from the payload type and content')
    .addOption(schemaOption())
    .option('--fragment', 'the stream is an EXI fragment (xmldsig references, SignedInfo)')
    .option('--payload-type <n>', 'V2GTP payload type for schema selection (e.g. 0x8004 for -20 DC)')
    .argument('<hex>', 'EXI bytes as hex')
    .action((hex: string, o: { schema?: SchemaId; fragment?: boolean; payloadType?: string }) => {
      let bytes = hexBytes(hex);
      if (bytes[0] === 0x01 && bytes[1] === 0xfe) {
        // A V2GTP message as captured on the wire: its header names the payload type.
        const frame = decodeDatagram(bytes);
        bytes = frame.payload;
        o.payloadType ??= String(frame.payloadType);
      }
      if (o.fragment) {
        process.stdout.write(`${json(decodeFragment(o.schema ?? 'iso2', bytes))}\n`);
      } else if (o.schema) {
        process.stdout.write(`${json(decodeAny(o.schema, bytes))}\n`);
      } else {
        const payloadType = o.payloadType === undefined ? payloadTypeOf('iso2') : Number(o.payloadType);
        if (!Number.isInteger(payloadType) || payloadType < 0 || payloadType > 0xffff) {
          throw new EvccError('CONFIG_INVALID', `--payload-type must be a 16-bit number (e.g. 0x8001), got "${o.payloadType}"`);
        }
        const r = decodeV2gtpPayload(payloadType, bytes);
        process.stdout.write(`${json({ schema: r.schema, message: r.message })}\n`);
      }
    });

  exi.command('encode')
    .description('encode a message (JSON, as `decode` prints it) to EXI hex')
    .addOption(schemaOption().makeOptionMandatory())
    .option('--fragment', 'encode as an EXI fragment')
    .option('--file <path>', 'read the JSON message from a file')
    .argument('[json]', 'the message as JSON')
    .action(async (text: string | undefined, o: { schema: SchemaId; fragment?: boolean; file?: string }) => {
      let source = text;
      if (o.file) {
        try {
          source = await readFile(o.file, 'utf8');
        } catch (err) {
          throw new EvccError('CONFIG_INVALID', `cannot read ${o.file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { path: o.file }, { cause: err });
        }
      }
      if (!source) throw new EvccError('CONFIG_INVALID', 'give the message as an argument or with --file');
      let message: unknown;
      try {
        message = JSON.parse(source);
      } catch (err) {
        throw new EvccError('CONFIG_INVALID', `the message is not JSON: ${(err as Error).message}`, {}, { cause: err });
      }
      const bytes = o.fragment ? encodeFragment(o.schema, message as FragmentOf<SchemaId>) : encodeAny(o.schema, message);
      process.stdout.write(`${Buffer.from(bytes).toString('hex')}\n`);
    });
};
