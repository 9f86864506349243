/**
 * RECEIVE ROD TOKEN INFORMATION 84h/07h and REPORT ALL ROD TOKENS 84h/08h
 * (SPC-5 6.18.x, 6.x; reference 2.9). RRTI is RECEIVE COPY STATUS(LID4)'s
 * 32-byte header and sense data, then ROD TOKEN DESCRIPTORS LENGTH and, for
 * a POPULATE TOKEN that completed, one descriptor: 2 bytes ID FOR CREATING
 * ROD CSCD DESCRIPTOR (0) and the 512-byte token. Any list identifier of the
 * nexus (PT, WUT, EXTENDED COPY) answers, with its TRANSFER COUNT.
 */
import type { CommandContext, CommandResult } from '../command-context';
import { allocationLimited } from '../command-context';
import { invalidCdbField } from '../sense';
import { copyManagerOf, CopyOperationStatus } from './copy-manager';
import { encodeCopyStatusLid4 } from './receive-copy-results';
import { creatorDesignator, decodeRodToken, rodManagementToken } from './rod-token';
import { rodTokensOf } from './populate-token';

export const RodTokenInfoSa = { RECEIVE_ROD_TOKEN_INFORMATION: 0x07, REPORT_ALL_ROD_TOKENS: 0x08 } as const;

/** The RRTI data of an operation (status header + sense + token descriptors). */
export function encodeRodTokenInformation(op: Parameters<typeof encodeCopyStatusLid4>[0]): Buffer {
  const head = encodeCopyStatusLid4(op);
  const status = head[5];
  // Reference 2.9: ROD TOKEN DESCRIPTORS LENGTH is 0 unless the operation completed without errors (01h/03h).
  const withToken = op.rod?.token !== undefined && (status === CopyOperationStatus.COMPLETED || status === CopyOperationStatus.COMPLETED_PARTIAL);
  const trailer = Buffer.alloc(4 + (withToken ? 2 + op.rod!.token!.length : 0));
  if (withToken) {
    trailer.writeUInt32BE(2 + op.rod!.token!.length, 0);
    op.rod!.token!.copy(trailer, 6);
  }
  const b = Buffer.concat([head, trailer]);
  b.writeUInt32BE(b.length - 4, 0); // AVAILABLE DATA (n-3)
  return b;
}

export async function executeReceiveRodTokenInformation(ctx: CommandContext): Promise<CommandResult> {
  const op = copyManagerOf(ctx).find(ctx.task.nexus.key, ctx.lun, ctx.cdb.readUInt32BE(2));
  // Unknown list identifier for this I_T nexus -> 5/24/00 at CDB byte 2 (reference 2.9).
  if (!op) throw invalidCdbField(2);
  return allocationLimited(encodeRodTokenInformation(op), ctx.cdb.readUInt32BE(10));
}

/**
 * 84h/08h: the ROD management tokens (bytes 0-95) of the live tokens whose
 * creator LU this nexus may access.
 */
export async function executeReportAllRodTokens(ctx: CommandContext): Promise<CommandResult> {
  const manager = copyManagerOf(ctx);
  const nexus = ctx.task.nexus;
  const visible = rodTokensOf(ctx)
    .tokens()
    .filter((t) => manager.resolve(nexus, creatorDesignator(decodeRodToken(t.bytes)))?.lu === t.lu);
  const b = Buffer.alloc(8 + 96 * visible.length);
  b.writeUInt32BE(b.length - 4, 0);
  visible.forEach((t, i) => rodManagementToken(t.bytes).copy(b, 8 + 96 * i));
  return allocationLimited(b, ctx.cdb.readUInt32BE(10));
}
