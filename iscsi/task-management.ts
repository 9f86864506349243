/**
 * Task management functions (RFC 7143 §11.5; SAM-5 7): the connection's own
 * tasks are aborted here and waited for, then the SCSI core does the rest
 * (clearing other nexuses' tasks, unit attentions, resets). The answer is
 * the TMF response code.
 */
import { TmfField, TmfResponse, cmdSnOf, decodeLun, flagsOf } from './pdu';
import type { Session } from './session';
import type { IscsiTask } from './task';
import { TmfFunction } from '../scsi/types';

/** What task management needs of its connection. */
export interface TaskAborter {
  /** The connection's task of this ITT, if any. */
  task(itt: number): IscsiTask | undefined;
  /** Abort the connection's tasks that match and wait until they have settled. */
  abortTasks(match: (t: IscsiTask) => boolean): Promise<void>;
}

/** Run the function of a Task Management Function Request (its BHS); resolves with the response code. */
export async function executeTaskManagement(bhs: Buffer, session: Session, tasks: TaskAborter): Promise<number> {
  const fn = flagsOf(bhs) & 0x7f;
  const lun = decodeLun(bhs, 8);
  const device = session.target!.device;
  const nexus = session.nexus!;
  switch (fn) {
    case TmfFunction.ABORT_TASK: {
      const t = tasks.task(bhs.readUInt32BE(TmfField.REF_TASK_TAG));
      if (!t || t.finished) {
        // §11.5.1 b/c: a command still on its way (RefCmdSN in the window) counts as received
        // and aborted; one already done, or never sent, does not exist.
        const consumed = !t && session.consumeMissing(bhs.readUInt32BE(TmfField.REF_CMDSN), cmdSnOf(bhs));
        return consumed ? TmfResponse.COMPLETE : TmfResponse.TASK_DOES_NOT_EXIST;
      }
      await tasks.abortTasks((x) => x === t);
      return TmfResponse.COMPLETE;
    }
    case TmfFunction.ABORT_TASK_SET:
      if (!device.lunsFor(nexus).includes(lun)) return TmfResponse.LUN_DOES_NOT_EXIST;
      await tasks.abortTasks((t) => t.lun === lun);
      return TmfResponse.COMPLETE;
    case TmfFunction.CLEAR_TASK_SET:
    case TmfFunction.LOGICAL_UNIT_RESET:
      if (!device.lunsFor(nexus).includes(lun)) return TmfResponse.LUN_DOES_NOT_EXIST;
      await tasks.abortTasks((t) => t.lun === lun);
      return tmfResponseOf(await device.taskManagement(fn, nexus, lun));
    case TmfFunction.TARGET_WARM_RESET:
    case TmfFunction.TARGET_COLD_RESET:
      await tasks.abortTasks(() => true);
      return tmfResponseOf(await device.taskManagement(fn, nexus, lun));
    case TmfFunction.TASK_REASSIGN:
      return TmfResponse.REASSIGNMENT_NOT_SUPPORTED;
    default:
      return TmfResponse.NOT_SUPPORTED;
  }
}

function tmfResponseOf(o: string): number {
  switch (o) {
    case 'complete':
      return TmfResponse.COMPLETE;
    case 'no-such-task':
      return TmfResponse.TASK_DOES_NOT_EXIST;
    case 'no-such-lun':
      return TmfResponse.LUN_DOES_NOT_EXIST;
    case 'not-supported':
      return TmfResponse.NOT_SUPPORTED;
    default:
      return TmfResponse.REJECTED;
  }
}
