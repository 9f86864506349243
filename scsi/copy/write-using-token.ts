/**
 * WRITE USING TOKEN 83h/11h (SBC-4 5.x; reference 2.11): write the bytes a
 * ROD token represents, from OFFSET INTO ROD on, into the listed ranges of
 * this LU; or zeros for the block device zero ROD token (FFFF_0001h).
 *
 *  - The token must have been sealed by this copy manager (rod-token.ts),
 *    be live (token-store.ts), and name an LU the issuing I_T nexus may
 *    access (the copy scope); then it works on any LU of the daemon that
 *    nexus reaches: cross-LUN and cross-target ODX.
 *  - Bytes move in the kernel: from the token's side file or the source LU
 *    file straight into this LU's file (BackingStore.copyRange), never over
 *    the wire. Every destination step holds the range's write lock and runs
 *    LogicalUnit.beforeWrite first, so tokens covering the destination keep
 *    their point in time (even the token being used, when the ranges meet).
 *  - Destination ranges beyond the ROD: as many whole blocks as the ROD
 *    fills, the last partial one zero-filled; the shortfall ends the command
 *    with COPY TARGET DEVICE DATA UNDERRUN and the TRANSFER COUNT.
 *  - Windows' time budget: a foreground WUT stops at its deadline with a
 *    partial, contiguous TRANSFER COUNT (INFORMATION, and RRTI), which
 *    Windows resumes from; every step, the first too, is sized to end
 *    before it (step-pacer.ts).
 */
import * as BL from 'buffer-layout';
import { abortReason } from '../abort';
import type { CommandContext, CommandResult } from '../command-context';
import type { LogicalUnit } from '../logical-unit';
import { storeErrorToSense } from '../mutation';
import type { ItNexus } from '../types';
import { SenseError, invalidParameterField } from '../sense';
import { copyManagerOf, type CopyOperation } from './copy-manager';
import type { CopyTarget } from './cscd';
import { CopyIoError, CopySideError, CopyStatusError, admit, admitBytes, writeStep } from './internal-port';
import { MAX_RANGE_DESCRIPTORS, ROD_CHUNK_BYTES } from './limits';
import { StepPacer } from './step-pacer';
import { RANGE_DESCRIPTOR_BYTES, RodTokenSa, decodeRangeDescriptors, fetchParameters, rodTokensOf } from './populate-token';
import { ROD_TOKEN_BYTES, creatorDesignator, decodeRodToken, isBlockDeviceZeroToken } from './rod-token';
import type { BlockRange, RodToken, RodTokenStore } from './token-store';

export const WUT_HEADER_BYTES = 536;
/** WRITE USING TOKEN DATA LENGTH must be at least 0226h (header + one descriptor - 2). */
const WUT_MIN_DATA_LENGTH = 0x226;
const MAX_WUT_PARAMETER_LIST_LENGTH = WUT_HEADER_BYTES + RANGE_DESCRIPTOR_BYTES * MAX_RANGE_DESCRIPTORS + 512;
const ZERO_STEP_BYTES = 1024 * 1024 * 1024;

interface WriteUsingTokenHeader {
  dataLength: number;
  flags: number;
  reserved3: Buffer;
  offsetIntoRod: Buffer;
  rodToken: Buffer;
  reserved528: Buffer;
  rangeDescriptorLength: number;
}

/** WRITE USING TOKEN parameter list header (SBC-4; reference 2.11). */
const WUT_HEADER = BL.struct<WriteUsingTokenHeader>([
  BL.u16be('dataLength'),
  BL.u8('flags'), // bit 1 DEL_TKN, bit 0 IMMED
  BL.blob(5, 'reserved3'),
  BL.blob(8, 'offsetIntoRod'), // destination logical blocks, 64 bit
  BL.blob(ROD_TOKEN_BYTES, 'rodToken'),
  BL.blob(6, 'reserved528'),
  BL.u16be('rangeDescriptorLength'),
]);

export interface WriteUsingTokenParameters {
  immed: boolean;
  deleteToken: boolean;
  offsetIntoRod: bigint;
  token: Buffer;
  ranges: BlockRange[];
}

export function decodeWriteUsingToken(params: Buffer, lu: LogicalUnit): WriteUsingTokenParameters {
  const h = WUT_HEADER.decode(params, 0);
  if (h.dataLength < WUT_MIN_DATA_LENGTH) throw invalidParameterField(0);
  if (h.rangeDescriptorLength < RANGE_DESCRIPTOR_BYTES) throw invalidParameterField(534);
  const usable = Math.min(h.rangeDescriptorLength, params.length - WUT_HEADER_BYTES, h.dataLength + 2 - WUT_HEADER_BYTES);
  return {
    immed: (h.flags & 0x01) !== 0,
    deleteToken: (h.flags & 0x02) !== 0,
    offsetIntoRod: h.offsetIntoRod.readBigUInt64BE(0),
    token: Buffer.from(h.rodToken),
    ranges: decodeRangeDescriptors(params, WUT_HEADER_BYTES, usable, 534, lu),
  };
}

/** Where a WUT got to: contiguous destination blocks, and whether it fell short. */
interface Progress {
  blocks: number;
  shortfall: boolean;
}

export async function executeWriteUsingToken(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  const store = rodTokensOf(ctx);
  const params = await fetchParameters(ctx, WUT_HEADER_BYTES, MAX_WUT_PARAMETER_LIST_LENGTH);
  if (!params) return {};
  const wut = decodeWriteUsingToken(params, lu);
  const nexus = ctx.task.nexus;
  const manager = copyManagerOf(ctx);
  const requested = wut.ranges.reduce((n, r) => n + r.blocks, 0);
  const listId = ctx.cdb.readUInt32BE(6);

  // The token is checked before the operation starts: every refusal is ILLEGAL REQUEST, nothing written.
  let token: RodToken | undefined;
  let creator: CopyTarget | undefined;
  if (!isBlockDeviceZeroToken(wut.token)) {
    token = store.resolve(wut.token);
    // Only an I_T nexus that may access the creator LU may use its token (the copy scope).
    creator = manager.resolve(nexus, creatorDesignator(decodeRodToken(wut.token)));
    if (!creator || creator.lu !== token.lu) throw new SenseError('TOKEN_UNKNOWN');
    // OFFSET INTO ROD x destination block size at or beyond the bytes represented -> 5/26/00 at byte 8.
    if (wut.offsetIntoRod * BigInt(lu.blockSize) >= BigInt(token.bytesRepresented)) throw invalidParameterField(8);
    // The internal READ of the source obeys its reservations like host I/O: a conflict is
    // RESERVATION CONFLICT, as for EXTENDED COPY (it was INTERNAL TARGET FAILURE).
    try {
      for (const r of token.ranges) admit(creator, nexus, 'read', BigInt(r.src / token.blockSize), BigInt(r.bytes / token.blockSize));
    } catch (err) {
      if (err instanceof CopyStatusError) return { status: err.status };
      throw err;
    }
  }
  const t = token;
  const source = creator;
  const port: WutPort = { nexus, destination: manager.own(ctx.lun, lu) };
  const deadline = wut.immed ? Infinity : Date.now() + store.wutDeadlineMs;
  if (t) store.hold(t);
  let started = false;
  try {
    return await manager.runTracked(
      ctx,
      { listId, serviceAction: RodTokenSa.WRITE_USING_TOKEN, immed: wut.immed, totalBytes: requested * lu.blockSize },
      async (op, log) => {
        started = true;
        try {
          const progress = await portErrors(() =>
            t ? writeFromToken(store, t, source!, port, wut, op, deadline) : writeZeros(port, wut.ranges, op, deadline),
          );
          await lu.syncIfWriteThrough();
          if (progress.blocks < requested) {
            // SBC-4: a shortfall -> COPY TARGET DEVICE DATA UNDERRUN, INFORMATION = TRANSFER COUNT
            // (COPY ABORTED when something was written, ILLEGAL REQUEST when nothing was).
            op.rod = { blocks: progress.blocks, partial: true };
            log.info({ blocks: progress.blocks, requested, shortfall: progress.shortfall }, 'WRITE USING TOKEN partial');
            throw new SenseError(progress.blocks > 0 ? 'COPY_TARGET_DEVICE_DATA_UNDERRUN' : 'DATA_UNDERRUN_NOTHING_TRANSFERRED', { information: progress.blocks });
          }
        } finally {
          if (t) {
            store.release(t);
            // DEL_TKN: the token goes when the command completes.
            if (wut.deleteToken) store.invalidate(t, 'deleted');
          }
        }
      },
    );
  } catch (err) {
    // Refused before the operation ran (list identifier in use, limits): the hold ends here.
    if (t && !started) store.release(t);
    throw err;
  }
}

/** The internal port of one WRITE USING TOKEN: who issued it and the LU it writes. */
interface WutPort {
  nexus: ItNexus;
  destination: CopyTarget;
}

/**
 * Errors of the port as a WUT reports them: a store failure -> its sense; a
 * source LU the nexus can no longer reach -> COPY TARGET DEVICE NOT
 * REACHABLE (as for a remote token's creator); other admission errors
 * (write protect, range) as they are. RESERVATION CONFLICT passes as a status.
 */
async function portErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CopyIoError) throw storeErrorToSense(err.failure, err.side === 'destination');
    if (err instanceof CopySideError) {
      const f = err.failure;
      if (err.side === 'source' && f instanceof SenseError && f.reason === 'LOGICAL_UNIT_NOT_SUPPORTED') throw new SenseError('COPY_TARGET_DEVICE_NOT_REACHABLE');
      throw f;
    }
    throw err;
  }
}

/** Copy ROD bytes into the destination ranges, step by step, until done, short of ROD, or out of time. */
async function writeFromToken(store: RodTokenStore, t: RodToken, source: CopyTarget, port: WutPort, wut: WriteUsingTokenParameters, op: CopyOperation, deadline: number): Promise<Progress> {
  const signal = op.controller.signal;
  const lu = port.destination.lu;
  const dbs = lu.blockSize;
  // Windows' budget: every step, the first too, ends by the deadline (step-pacer.ts).
  const pacer = new StepPacer(deadline, ROD_CHUNK_BYTES, dbs, lu.store);
  let rod = Number(wut.offsetIntoRod) * dbs;
  const rodEnd = t.bytesRepresented;
  const p: Progress = { blocks: 0, shortfall: false };
  for (const r of wut.ranges) {
    for (let k = 0; k < r.blocks; ) {
      if (signal.aborted) throw abortReason(signal, 'copy aborted');
      if (rod >= rodEnd) {
        p.shortfall = true;
        return p;
      }
      // At the deadline: stop, partial and contiguous (SBC-4: COPY TARGET DEVICE DATA UNDERRUN with the count).
      const want = pacer.next();
      if (want === 0) return p;
      const n = Math.min(want / dbs, r.blocks - k);
      const dst = Number(r.lba + BigInt(k)) * dbs;
      const take = Math.min(n * dbs, rodEnd - rod);
      const wrote = Math.ceil(take / dbs);
      const from = rod;
      // The same rule as EXTENDED COPY: this step's source pieces and destination blocks, once held.
      const admitStep = (): void => {
        for (const piece of t.mapRod(from, take)) admitBytes(source, port.nexus, 'source', piece.src, piece.bytes);
        admitBytes(port.destination, port.nexus, 'destination', dst, wrote * dbs);
      };
      await pacer.step(wrote * dbs, () =>
        writeStep(lu, dst, wrote * dbs, admitStep, async (m) => {
          await m.move(dst, take, (into) => store.readInto(t, into, from, dst, take, signal));
          // Beyond the end of the ROD: the rest of the last block is zeros (SBC-4).
          if (take < wrote * dbs) await m.writeZeros(dst + take, wrote * dbs - take);
        }),
      );
      rod += take;
      k += wrote;
      p.blocks += wrote;
      op.rod!.blocks = p.blocks;
      op.bytesTransferred = p.blocks * dbs;
      op.operationCounter = (op.operationCounter + 2) & 0xffff;
      if (wrote < n) {
        p.shortfall = true;
        return p;
      }
    }
  }
  return p;
}

/** The block device zero ROD token: deallocate (reads back zeros, LBPRZ) or write zeros. */
async function writeZeros(port: WutPort, ranges: BlockRange[], op: CopyOperation, deadline: number): Promise<Progress> {
  const signal = op.controller.signal;
  const lu = port.destination.lu;
  const dbs = lu.blockSize;
  const pacer = new StepPacer(deadline, lu.store.canPunchHole ? ZERO_STEP_BYTES : ROD_CHUNK_BYTES, dbs);
  const p: Progress = { blocks: 0, shortfall: false };
  for (const r of ranges) {
    for (let k = 0; k < r.blocks; ) {
      if (signal.aborted) throw abortReason(signal, 'copy aborted');
      const want = pacer.next();
      if (want === 0) return p;
      const n = Math.min(want / dbs, r.blocks - k);
      const at = Number(r.lba + BigInt(k)) * dbs;
      await pacer.step(n * dbs, () => writeStep(
        lu,
        at,
        n * dbs,
        () => admitBytes(port.destination, port.nexus, 'destination', at, n * dbs),
        (m) => (lu.store.canPunchHole ? m.deallocate(at, n * dbs) : m.writeZeros(at, n * dbs)),
      ));
      k += n;
      p.blocks += n;
      op.rod!.blocks = p.blocks;
      op.bytesTransferred = p.blocks * dbs;
    }
  }
  return p;
}
