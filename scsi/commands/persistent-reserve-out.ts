/**
 * PERSISTENT RESERVE OUT (5Fh), SPC-5 6.17; reference 4.12. Decodes the CDB
 * and the parameter list, then applies the service action to the LU's
 * reservations as one transaction (lu.state.changeReservations; the rules are
 * in scsi/reservations.ts). With APTPL the new state is durable before GOOD.
 */
import type { CommandContext, CommandResult } from '../command-context';
import type { LogicalUnit } from '../logical-unit';
import { checkScopeAndType } from '../reservations';
import { SenseError, invalidParameterField } from '../sense';

/** PERSISTENT RESERVE OUT service actions. */
export const PrOutAction = {
  REGISTER: 0x00,
  RESERVE: 0x01,
  RELEASE: 0x02,
  CLEAR: 0x03,
  PREEMPT: 0x04,
  PREEMPT_AND_ABORT: 0x05,
  REGISTER_AND_IGNORE_EXISTING_KEY: 0x06,
  REGISTER_AND_MOVE: 0x07,
} as const;

/** The basic parameter list (SPC-5 6.17.4): 24 bytes. */
const BASIC_LIST = 24;
const PROTOCOL_ISCSI = 0x5;

/** Basic parameter list fields (SPC-5 table 173). */
interface PrOutParameters {
  reservationKey: bigint;
  serviceActionKey: bigint;
  specIPt: boolean;
  allTgPt: boolean;
  aptpl: boolean;
}

function decodeBasic(b: Buffer): PrOutParameters {
  return {
    reservationKey: b.readBigUInt64BE(0),
    serviceActionKey: b.readBigUInt64BE(8),
    specIPt: (b[20] & 0x08) !== 0,
    allTgPt: (b[20] & 0x04) !== 0,
    aptpl: (b[20] & 0x01) !== 0,
  };
}

async function fetchParameterList(ctx: CommandContext, min: number, exact: boolean): Promise<Buffer> {
  const length = ctx.cdb.readUInt32BE(5);
  ctx.dataOutLength = length;
  // SPC-5 6.17.3: a length other than 24 (SPEC_I_PT=0) -> PARAMETER LIST LENGTH ERROR.
  if (length < min || (exact && length !== min)) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
  if (ctx.task.expectedDataTransferLength < length) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
  return ctx.dataOut(length);
}

/** APTPL=1 where the LU cannot persist -> INVALID FIELD IN PARAMETER LIST (SPC-5 6.17.4). */
function checkAptpl(lu: LogicalUnit, aptpl: boolean, byte: number): void {
  if (aptpl && !lu.persistPath) throw invalidParameterField(byte, 0);
}

async function executeBasic(ctx: CommandContext, action: number): Promise<CommandResult> {
  const lu = ctx.lu!;
  const typed = action === PrOutAction.RESERVE || action === PrOutAction.RELEASE ||
    action === PrOutAction.PREEMPT || action === PrOutAction.PREEMPT_AND_ABORT;
  const type = checkScopeAndType(ctx.cdb, typed);
  const p = decodeBasic(await fetchParameterList(ctx, BASIC_LIST, true));
  // SIP_C=0: SPEC_I_PT is not supported (SPC-5 6.17.4).
  if (p.specIPt) throw invalidParameterField(20, 3);
  const nexus = ctx.task.nexus;
  switch (action) {
    case PrOutAction.REGISTER:
    case PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY: {
      checkAptpl(lu, p.aptpl, 20);
      const input = { ...p, ignoreExistingKey: action === PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY };
      await lu.state.changeReservations((r) => r.register(nexus, input));
      break;
    }
    case PrOutAction.RESERVE:
      await lu.state.changeReservations((r) => r.reserve(nexus, p.reservationKey, type));
      break;
    case PrOutAction.RELEASE:
      await lu.state.changeReservations((r) => r.release(nexus, p.reservationKey, type));
      break;
    case PrOutAction.CLEAR:
      await lu.state.changeReservations((r) => r.clear(nexus, p.reservationKey));
      break;
    case PrOutAction.PREEMPT:
    case PrOutAction.PREEMPT_AND_ABORT: {
      const removed = await lu.state.changeReservations((r) => r.preempt(nexus, p.reservationKey, p.serviceActionKey, type));
      if (action === PrOutAction.PREEMPT_AND_ABORT) {
        // SPC-5 5.14.12.3: the preempted I_T nexuses' tasks are aborted; never our own.
        const keys = lu.state.nexusKeysCovering(removed);
        keys.delete(nexus.key);
        if (keys.size) await ctx.device.abortTasksOf(ctx.lun, keys);
      }
      break;
    }
    default:
      throw new Error(`PR OUT: service action ${action} has no basic handler`);
  }
  return {};
}

export const executeRegister = (ctx: CommandContext): Promise<CommandResult> => executeBasic(ctx, PrOutAction.REGISTER);
export const executeRegisterAndIgnore = (ctx: CommandContext): Promise<CommandResult> => executeBasic(ctx, PrOutAction.REGISTER_AND_IGNORE_EXISTING_KEY);
export const executePrReserve = (ctx: CommandContext): Promise<CommandResult> => executeBasic(ctx, PrOutAction.RESERVE);
export const executePrRelease = (ctx: CommandContext): Promise<CommandResult> => executeBasic(ctx, PrOutAction.RELEASE);
export const executeClear = (ctx: CommandContext): Promise<CommandResult> => executeBasic(ctx, PrOutAction.CLEAR);
export const executePreempt = (ctx: CommandContext): Promise<CommandResult> => executeBasic(ctx, PrOutAction.PREEMPT);
export const executePreemptAndAbort = (ctx: CommandContext): Promise<CommandResult> => executeBasic(ctx, PrOutAction.PREEMPT_AND_ABORT);

/**
 * Decode an iSCSI TransportID (SPC-5 7.6.4.6) into an initiator port name:
 * format 00b `iqn…` (every ISID), 01b `iqn…,i,0x<ISID>`. `at` is its offset
 * in the parameter list, for field pointers.
 */
export function decodeIscsiTransportId(b: Buffer, at: number): string {
  if (b.length < 4 || (b[0] & 0x0f) !== PROTOCOL_ISCSI) throw invalidParameterField(at, 3);
  const format = b[0] >> 6;
  if (format > 1) throw invalidParameterField(at, 7);
  const length = b.readUInt16BE(2);
  if (length < 4 || 4 + length > b.length) throw invalidParameterField(at + 2);
  const raw = b.subarray(4, 4 + length);
  const nul = raw.indexOf(0);
  const text = raw.subarray(0, nul < 0 ? raw.length : nul).toString('utf8');
  if (format === 0) return text.toLowerCase();
  const m = /^(.*),i,0x([0-9a-f]{12})$/i.exec(text);
  if (!m) throw invalidParameterField(at + 4);
  return `${m[1].toLowerCase()},i,0x${m[2].toLowerCase()}`;
}

/** REGISTER AND MOVE (SPC-5 6.17.5): parameter list with a TransportID. */
export async function executeRegisterAndMove(ctx: CommandContext): Promise<CommandResult> {
  const lu = ctx.lu!;
  checkScopeAndType(ctx.cdb, false);
  const b = await fetchParameterList(ctx, BASIC_LIST, false);
  const reservationKey = b.readBigUInt64BE(0);
  const serviceActionKey = b.readBigUInt64BE(8);
  const unreg = (b[17] & 0x02) !== 0;
  const aptpl = (b[17] & 0x01) !== 0;
  checkAptpl(lu, aptpl, 17);
  const relativeTargetPort = b.readUInt16BE(18);
  const tidLength = b.readUInt32BE(20);
  if (BASIC_LIST + tidLength > b.length) throw new SenseError('PARAMETER_LIST_LENGTH_ERROR');
  const initiatorPortName = decodeIscsiTransportId(b.subarray(BASIC_LIST, BASIC_LIST + tidLength), BASIC_LIST);
  if (!ctx.device.relativeTargetPorts.includes(relativeTargetPort)) throw invalidParameterField(18);
  const nexus = ctx.task.nexus;
  await lu.state.changeReservations((r) => r.registerAndMove(nexus, reservationKey, serviceActionKey, { initiatorPortName, relativeTargetPort }, unreg, aptpl));
  return {};
}
