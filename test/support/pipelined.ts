/**
 * Several SCSI commands in flight at once on one session, as hosts queue them (ESXi's XCOPY
 * clones, QEMU's copy coroutines): the command PDUs go out in one write, so the target reads
 * them together and all are running before the first can finish; then one reader collects the
 * answers by ITT (TestInitiator.command reads one answer at a time and cannot share a session).
 * Parameter lists travel as immediate data (they must fit the negotiated first burst); an R2T
 * for the rest is answered from the command's own buffer.
 */
import { NO_TAG, padLength } from '../../iscsi/pdu';
import { answerR2t, scsiCommandBhs, type CommandResult, type TestInitiator } from './initiator';

export interface PipelinedCommand {
  lun: number;
  cdb: Buffer;
  dataOut?: Buffer;
  read?: number;
}

/** Send `cmds` in one write and wait for every answer (null for one that did not come within `timeoutMs`). */
export async function pipelined(c: TestInitiator, cmds: PipelinedCommand[], timeoutMs = 60_000): Promise<CommandResult[]> {
  if (c.headerDigest || c.dataDigest) throw new Error('pipelined(): digests are not supported here');
  const mrdsl = Number(c.keys.MaxRecvDataSegmentLength ?? 8192);
  const fbl = Number(c.keys.FirstBurstLength ?? 65536);
  const window = ((c.maxCmdSN - c.cmdSN) >>> 0) + 1;
  if (cmds.length > window) throw new Error(`pipelined(): ${cmds.length} commands but the CmdSN window allows ${window}`);
  const pending = new Map<number, { i: number; chunks: Buffer[]; out: Buffer }>();
  const parts: Buffer[] = [];
  cmds.forEach((cmd, i) => {
    const out = cmd.dataOut ?? Buffer.alloc(0);
    const imm = out.subarray(0, Math.min(out.length, mrdsl, fbl));
    const itt = c.itt++;
    const cmdSN = c.cmdSN;
    c.cmdSN = (c.cmdSN + 1) >>> 0;
    const edtl = cmd.read ?? out.length;
    const h = scsiCommandBhs({ itt, cmdSN, expStatSN: c.expStatSN, lun: cmd.lun, cdb: cmd.cdb, edtl, read: cmd.read !== undefined, write: out.length > 0 });
    h.writeUIntBE(imm.length, 5, 3);
    parts.push(h, imm, Buffer.alloc(padLength(imm.length)));
    pending.set(itt, { i, chunks: [], out });
  });
  c.raw(Buffer.concat(parts));
  const results: CommandResult[] = new Array(cmds.length);
  const deadline = Date.now() + timeoutMs;
  while (pending.size > 0) {
    const left = deadline - Date.now();
    const p = left > 0 ? await c.next(left) : null;
    if (!p) throw new Error(`pipelined(): ${pending.size} of ${cmds.length} commands unanswered (${c.closed ? 'connection closed' : 'timed out'})`);
    const op = p.bhs[0] & 0x3f;
    const itt = p.bhs.readUInt32BE(16);
    if (op === 0x20 && itt === NO_TAG) {
      c.nopOut(p.bhs.readUInt32BE(20), NO_TAG, Buffer.alloc(0), true); // a target ping
      continue;
    }
    const entry = pending.get(itt);
    if (!entry) {
      c.stray.push(p);
      continue;
    }
    if (op === 0x21 || (op === 0x25 && p.bhs[1] & 0x01)) c.expStatSN = (p.bhs.readUInt32BE(24) + 1) >>> 0;
    c.maxCmdSN = p.bhs.readUInt32BE(32);
    if (op === 0x31) {
      answerR2t(c, p, entry.out);
      continue;
    }
    if (op === 0x25) {
      entry.chunks.push(p.data);
      if (!(p.bhs[1] & 0x01)) continue;
      results[entry.i] = { status: p.bhs[3], data: Buffer.concat(entry.chunks), residual: p.bhs.readUInt32BE(44), flags: p.bhs[1], response: 0 };
      pending.delete(itt);
      continue;
    }
    if (op === 0x21) {
      const sense = p.data.length >= 2 ? p.data.subarray(2, 2 + p.data.readUInt16BE(0)) : undefined;
      results[entry.i] = { status: p.bhs[3], sense, data: Buffer.concat(entry.chunks), residual: p.bhs.readUInt32BE(44), flags: p.bhs[1], response: p.bhs[2] };
      pending.delete(itt);
      continue;
    }
    c.stray.push(p);
  }
  return results;
}
