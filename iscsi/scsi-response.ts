/**
 * The end of the pipeline: a command's result as iSCSI PDUs (RFC 7143
 * §11.4, §11.7): Data-In split by the initiator's MaxRecvDataSegmentLength
 * and MaxBurstLength, with the status in the last Data-In (S bit) when it is
 * GOOD without sense, else a SCSI Response; underflow and overflow residuals
 * against EDTL (§11.4.5).
 */
import {
  DATAIN_FLAG_S,
  FLAG_F,
  RESP_FLAG_OVERFLOW,
  RESP_FLAG_UNDERFLOW,
  encodeDataIn,
  encodeScsiResponse,
  type SequenceNumbers,
} from './pdu';
import type { PduWriter } from './pdu-writer';
import type { IscsiTask } from './task';
import type { NegotiatedParams } from './types';
import { ScsiStatus, type ScsiResult } from '../scsi/types';

/** U or O flag for `moved` bytes against EDTL (0 when equal); the residual is their difference. */
function residualFlag(moved: number, edtl: number): number {
  if (moved < edtl) return RESP_FLAG_UNDERFLOW;
  return moved > edtl ? RESP_FLAG_OVERFLOW : 0;
}

/** Answer a finished command: Data-In (with status when it can ride along) or a SCSI Response. */
export function sendResult(out: PduWriter, task: IscsiTask, params: NegotiatedParams, result: ScsiResult): void {
  const edtl = task.expectedDataTransferLength;
  if (result.dataIn && result.dataIn.length > 0 && edtl > 0) {
    const produced = result.dataInLength ?? result.dataIn.reduce((n, b) => n + b.length, 0);
    sendDataIn(out, task, params, result.dataIn, produced, result.status, result.sense);
    return;
  }
  let flag = 0;
  let resid = 0;
  if (task.isWrite || task.isRead || edtl > 0) {
    const moved = result.dataOutLength ?? result.dataInLength ?? 0;
    flag = residualFlag(moved, edtl);
    resid = Math.abs(edtl - moved);
  }
  sendScsiResponse(out, task, result.status, result.sense, flag, resid);
}

export function sendScsiResponse(out: PduWriter, task: IscsiTask, status: number, sense: Buffer | undefined, rflags: number, resid: number): void {
  let data: Buffer | undefined;
  if (sense && sense.length > 0) {
    data = Buffer.allocUnsafe(2 + sense.length);
    data.writeUInt16BE(sense.length, 0);
    sense.copy(data, 2);
  }
  const h = encodeScsiResponse(
    {
      itt: task.itt,
      status,
      response: 0,
      flags: rflags,
      residual: resid,
      expDataSN: task.dataSN,
      dataLength: data ? data.length : 0,
    },
    out.withStatus(),
  );
  out.send(h, data);
}

/** Data-In PDUs of at most the initiator's MaxRecvDataSegmentLength; status rides in the last one when GOOD. */
function sendDataIn(
  out: PduWriter, task: IscsiTask, params: NegotiatedParams, bufs: Buffer[], produced: number, status: number, sense?: Buffer,
): void {
  const edtl = task.expectedDataTransferLength;
  const data = bufs.length === 1 ? bufs[0] : Buffer.concat(bufs);
  const total = Math.min(produced, edtl, data.length);
  const rflags = residualFlag(produced, edtl);
  const resid = Math.abs(edtl - produced);
  const statusInData = status === ScsiStatus.GOOD && !sense;
  const mrdsl = params.maxRecvDataSegmentLength;
  const burst = params.maxBurstLength;
  let off = 0;
  let burstUsed = 0;
  while (off < total) {
    const n = Math.min(mrdsl, total - off, burst - burstUsed);
    const last = off + n >= total;
    burstUsed += n;
    let flags = 0;
    if (last || burstUsed >= burst) flags |= FLAG_F;
    if (burstUsed >= burst) burstUsed = 0;
    let sn: SequenceNumbers;
    if (last && statusInData) {
      flags |= DATAIN_FLAG_S | rflags;
      sn = out.withStatus();
    } else {
      sn = out.noStatus();
    }
    const h = encodeDataIn(
      {
        itt: task.itt,
        lun: null,
        flags,
        status,
        dataSN: task.dataSN++,
        bufferOffset: off,
        residual: resid,
        dataLength: n,
      },
      sn,
    );
    out.send(h, data.subarray(off, off + n));
    off += n;
  }
  if (!statusInData || total === 0) sendScsiResponse(out, task, status, sense, rflags, resid);
}
