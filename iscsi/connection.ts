/**
 * One iSCSI connection. The pipeline, in order:
 *
 *   socket -> PduFramer (BHS/AHS/digests/limits)
 *          -> login (LoginNegotiator, login.ts) until full feature phase
 *          -> Session.admit (CmdSN window, in-order delivery)
 *          -> IscsiTask -> ScsiDevice.execute (command table, CDB validation,
 *             LU checks, handler, backing store)
 *          -> data mover: task.dataOut() fulfilled by the DataOutSequencer
 *             (data-out.ts: immediate data, unsolicited Data-Out, R2T)
 *          -> status: Data-In and SCSI Response (scsi-response.ts), written
 *             by the PduWriter (pdu-writer.ts).
 *
 * Task management (task-management.ts), SendTargets, NOP and logout are
 * answered here too. Broken PDUs are transport errors: a Reject where the
 * PDU can be answered, the connection dropped where it cannot. Nothing here
 * builds sense data.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { PduFramer, FramerError } from './framer';
import {
  CMD_ATTR_MASK,
  CMD_FLAG_R,
  CMD_FLAG_W,
  DataOutField,
  FLAG_C,
  FLAG_F,
  InitiatorOpcode,
  LogoutField,
  NO_TAG,
  Pdu,
  RejectReason,
  ScsiCommandField,
  TmfResponse,
  cmdSnOf,
  decodeLun,
  encodeLogoutResponse,
  encodeNopIn,
  encodeR2t,
  encodeTextResponse,
  encodeTmfResponse,
  flagsOf,
  isImmediate,
  ittOf,
  opcodeOf,
  tttOf,
} from './pdu';
import { PduWriter } from './pdu-writer';
import { IscsiTask, TransportError, DataSolicitor } from './task';
import { TaskTable } from './task-table';
import { DATA_OUT_ERRORS, DataOutSequencer } from './data-out';
import { sendResult } from './scsi-response';
import { executeTaskManagement } from './task-management';
import type { Session } from './session';
import type { ServerContext } from './server';
import { LoginNegotiator, type Established } from './login';
import { buildSendTargetsResponse } from './discovery';
import { TmfFunction } from '../scsi/types';

/** Login PDUs may carry at most 8192 bytes of text (RFC 7143 §6.1). */
const LOGIN_MAX_DSL = 8192;

type State = 'login' | 'ffp' | 'logout' | 'closed';

export class Connection implements DataSolicitor {
  readonly id: number;
  readonly log: Logger;
  state: State = 'login';
  /** What login established (session, negotiated keys, CID); null until full feature phase. */
  private established: Established | null = null;
  private readonly framer: PduFramer;
  private readonly out: PduWriter;
  private readonly tasks = new TaskTable();
  private login: LoginNegotiator | null;
  private loginChain: Promise<void> = Promise.resolve();
  /** Last time a PDU arrived (ms), for NOP-In pings. */
  lastActivity = Date.now();
  private pingTtt = NO_TAG;
  private pingSentAt = 0;
  readonly openedAt = Date.now();
  private textContinuation: { ttt: number; rest: Buffer } | null = null;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;

  constructor(
    readonly socket: Socket,
    readonly ctx: ServerContext,
    id: number,
  ) {
    this.id = id;
    this.log = ctx.log.child({ conn: id, peer: `${socket.remoteAddress}:${socket.remotePort}` });
    this.closedPromise = new Promise((r) => (this.resolveClosed = r));
    this.out = new PduWriter(socket);
    this.framer = new PduFramer(
      { maxDataSegmentLength: LOGIN_MAX_DSL },
      (pdu) => this.onPdu(pdu),
      (err) => this.onFramerError(err),
    );
    this.login = new LoginNegotiator(this, ctx);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.lastActivity = Date.now();
      this.framer.push(chunk);
    });
    socket.on('error', (err) => this.log.debug({ err }, 'socket error'));
    socket.on('close', () => this.onClosed());
  }

  get closed(): Promise<void> {
    return this.closedPromise;
  }

  /** The session, once login completed. */
  get session(): Session | null {
    return this.established?.session ?? null;
  }

  /** The connection's CID, once login completed (0 before). */
  get cid(): number {
    return this.established?.cid ?? 0;
  }

  /** LoginPort: write one PDU (login responses). */
  send(header: Buffer, data?: Buffer): void {
    this.out.send(header, data);
  }

  /** LoginPort: switch the framer and writer to the negotiated keys (after the final login response). */
  enterFullFeature(established: Established): void {
    const { session, params } = established;
    this.established = established;
    this.state = 'ffp';
    this.login = null;
    this.out.start(session, params, established.statSN);
    this.framer.maxDataSegmentLength = params.targetMaxRecvDataSegmentLength;
    this.framer.headerDigest = params.headerDigest;
    this.framer.dataDigest = params.dataDigest;
    this.log.info(
      { tsih: session.tsih, type: session.type, target: session.target?.name, initiator: session.initiatorName },
      'full feature phase',
    );
  }

  // ---- input ------------------------------------------------------------

  private onFramerError(err: FramerError): void {
    this.log.warn({ code: err.code }, `framing error: ${err.message}`);
    if (err.code === 'DATA_SEGMENT_TOO_LONG' && err.bhs && this.state === 'ffp') {
      // Answerable, but the stream position is lost: say why, then drop.
      this.out.reject(err.bhs, RejectReason.PROTOCOL_ERROR);
    }
    if (err.code === 'DATA_DIGEST' && err.bhs && this.state === 'ffp') {
      this.out.reject(err.bhs, RejectReason.DATA_DIGEST_ERROR);
    }
    this.drop(`framing: ${err.code}`);
  }

  private onPdu(pdu: Pdu): void {
    if (this.state === 'closed') return;
    try {
      if (this.state === 'login') {
        if (opcodeOf(pdu.bhs) !== InitiatorOpcode.LOGIN_REQUEST) {
          this.log.warn({ opcode: opcodeOf(pdu.bhs) }, 'non-login PDU before full feature phase');
          this.drop('protocol: PDU before login');
          return;
        }
        // Login text must outlive the receive buffer while the chain waits.
        const copy: Pdu = { bhs: Buffer.from(pdu.bhs), ahs: Buffer.from(pdu.ahs), data: Buffer.from(pdu.data) };
        this.loginChain = this.loginChain.then(() => this.runLogin(copy));
        return;
      }
      if (this.established) this.onFullFeaturePdu(pdu, this.established);
    } catch (err) {
      this.log.error({ err }, 'unexpected error handling PDU');
      this.drop('internal error');
    }
  }

  private async runLogin(pdu: Pdu): Promise<void> {
    if (!this.login || this.state !== 'login') return;
    try {
      await this.login.handle(pdu);
    } catch (err) {
      this.log.error({ err }, 'login failed unexpectedly');
      this.drop('internal error in login');
    }
  }

  private onFullFeaturePdu(pdu: Pdu, ffp: Established): void {
    const bhs = pdu.bhs;
    const op = opcodeOf(bhs);
    const session = ffp.session;
    if (session.type === 'Discovery') {
      if (op !== InitiatorOpcode.TEXT_REQUEST && op !== InitiatorOpcode.LOGOUT_REQUEST && op !== InitiatorOpcode.NOP_OUT) {
        this.out.reject(bhs, RejectReason.PROTOCOL_ERROR);
        return;
      }
    }
    switch (op) {
      case InitiatorOpcode.SCSI_COMMAND:
        return this.onScsiCommand(pdu, ffp);
      case InitiatorOpcode.SCSI_DATA_OUT:
        return this.onDataOut(pdu);
      case InitiatorOpcode.NOP_OUT:
        return this.onNopOut(pdu, ffp);
      case InitiatorOpcode.TASK_MGMT_REQUEST:
        return void this.admitCommand(pdu, session, () => void this.onTaskManagement(Buffer.from(bhs), session));
      case InitiatorOpcode.TEXT_REQUEST: {
        const copy = { bhs: Buffer.from(bhs), ahs: Buffer.alloc(0), data: Buffer.from(pdu.data) };
        return void this.admitCommand(pdu, session, () => this.onTextRequest(copy, ffp));
      }
      case InitiatorOpcode.LOGOUT_REQUEST:
        return void this.admitCommand(pdu, session, () => void this.onLogout(Buffer.from(bhs), ffp.cid));
      case InitiatorOpcode.LOGIN_REQUEST:
        // A login in full feature phase is a protocol error (RFC 7143 §6.2).
        this.out.reject(bhs, RejectReason.PROTOCOL_ERROR);
        this.drop('protocol: login in full feature phase');
        return;
      case InitiatorOpcode.SNACK_REQUEST:
        // ErrorRecoveryLevel 0: SNACK is not supported (RFC 7143 §11.16).
        this.out.reject(bhs, RejectReason.PROTOCOL_ERROR);
        return;
      default:
        this.out.reject(bhs, RejectReason.COMMAND_NOT_SUPPORTED);
    }
  }

  /** Run `deliver` in CmdSN order (immediate PDUs at once). 'discard': it will never run. */
  private admitCommand(pdu: Pdu, session: Session, deliver: () => void): 'deliver-now' | 'held' | 'discard' {
    if (isImmediate(pdu.bhs)) {
      deliver();
      return 'deliver-now';
    }
    const verdict = session.admit(cmdSnOf(pdu.bhs), deliver);
    if (verdict === 'deliver-now') {
      deliver();
      session.drain();
    } else if (verdict === 'discard') {
      this.log.debug({ cmdSN: cmdSnOf(pdu.bhs), expCmdSN: session.expCmdSN, maxCmdSN: session.maxCmdSN }, 'CmdSN outside window: discarded');
    }
    return verdict;
  }

  // ---- SCSI Command -----------------------------------------------------

  private onScsiCommand(pdu: Pdu, ffp: Established): void {
    const bhs = pdu.bhs;
    const { session, params } = ffp;
    const itt = ittOf(bhs);
    const flags = flagsOf(bhs);
    const edtl = bhs.readUInt32BE(ScsiCommandField.EDTL);
    const isWrite = (flags & CMD_FLAG_W) !== 0;
    const isRead = (flags & CMD_FLAG_R) !== 0;
    const immediateLen = pdu.data.length;

    if (this.tasks.has(itt)) {
      // RFC 7143 §11.3: an ITT must be unique among the connection's tasks.
      this.out.reject(bhs, RejectReason.TASK_IN_PROGRESS);
      return;
    }
    if (!(flags & FLAG_F)) {
      // Unsolicited data in the command PDU only; F=0 means more follows (bidi AHS unsupported).
      if (!isWrite) {
        this.out.reject(bhs, RejectReason.PROTOCOL_ERROR);
        return;
      }
    }
    if (immediateLen > 0) {
      if (!isWrite || !params.immediateData || immediateLen > edtl || immediateLen > params.firstBurstLength) {
        this.out.reject(bhs, RejectReason.PROTOCOL_ERROR);
        this.drop('protocol: bad immediate data');
        return;
      }
    }
    let cdb: Buffer;
    const base = bhs.subarray(ScsiCommandField.CDB, ScsiCommandField.CDB + 16);
    if (pdu.ahs.length >= 4 && pdu.ahs[2] === 1) {
      // Extended CDB AHS (type 1): AHSLength counts a reserved byte plus the CDB bytes beyond 16.
      const ahsLen = pdu.ahs.readUInt16BE(0);
      const ext = pdu.ahs.subarray(4, 4 + Math.max(0, ahsLen - 1));
      cdb = Buffer.concat([base, ext]);
    } else {
      cdb = Buffer.from(base);
    }
    const lunField = Buffer.from(bhs.subarray(8, 16));
    const task = new IscsiTask({
      itt,
      lun: decodeLun(lunField, 0),
      lunField,
      cdb,
      nexus: session.nexus!,
      expectedDataTransferLength: edtl,
      attribute: flags & CMD_ATTR_MASK,
      isWrite,
      isRead,
      // Only the first burst is buffered now; the sequencer grows to what the core asks for when the command runs.
      writeData: isWrite && edtl > 0
        ? new DataOutSequencer({
          expectedDataTransferLength: edtl,
          immediateData: pdu.data,
          final: (flags & FLAG_F) !== 0,
          initialR2T: params.initialR2T,
          firstBurstLength: params.firstBurstLength,
          maxBurstLength: params.maxBurstLength,
          maxOutstandingR2T: params.maxOutstandingR2T,
        })
        : null,
      solicitor: this,
      maxDataOutLength: this.ctx.limits.maxWriteBuffer,
    });
    this.tasks.add(task);
    // A discarded command leaves nothing behind: not its ITT, not its write buffer.
    if (this.admitCommand(pdu, session, () => void this.executeTask(task, ffp)) === 'discard') this.finishTask(task);
  }

  private async executeTask(task: IscsiTask, ffp: Established): Promise<void> {
    const session = ffp.session;
    task.delivered = true;
    session.taskStarted();
    // The slot is free once status is decided, so the status PDU itself
    // advertises the reopened window (RFC 7143 §4.2.2.1).
    let counted = true;
    try {
      if (task.aborted) return;
      const result = await session.target!.device.execute(task);
      if (result.aborted || task.aborted || this.state === 'closed') return;
      counted = false;
      session.taskFinished();
      sendResult(this.out, task, ffp.params, result);
    } catch (err) {
      if (!(err instanceof TransportError)) this.log.error({ err, itt: task.itt }, 'task failed unexpectedly');
    } finally {
      this.finishTask(task);
      if (counted) session.taskFinished();
    }
  }

  private finishTask(task: IscsiTask): void {
    this.tasks.remove(task);
    task.finish();
  }

  // ---- write data: unsolicited Data-Out and R2T ------------------------

  /** DataSolicitor: keep up to MaxOutstandingR2T R2Ts in flight until the bytes the core wants are requested. */
  solicit(task: IscsiTask): void {
    const seq = task.writeData;
    if (this.state !== 'ffp' || task.aborted || !seq) return;
    while (seq.needsR2t()) {
      const ttt = this.tasks.allocTtt();
      const r2t = seq.openR2t(ttt);
      this.tasks.r2tOpened(ttt);
      task.dataSN++;
      const h = encodeR2t(
        { itt: task.itt, ttt, lun: task.lunField, r2tSN: r2t.r2tSN, bufferOffset: r2t.bufferOffset, desiredLength: r2t.desiredLength },
        this.out.noStatus(),
      );
      this.out.send(h);
    }
  }

  private onDataOut(pdu: Pdu): void {
    const bhs = pdu.bhs;
    const ttt = tttOf(bhs);
    const task = this.tasks.get(ittOf(bhs));
    if (!task || task.aborted) {
      // The task finished early (error status) or was aborted: its data is dropped (RFC 7143 §11.7).
      if (ttt !== NO_TAG && !task && !this.tasks.isRetired(ttt)) {
        this.out.reject(bhs, RejectReason.INVALID_PDU_FIELD);
      }
      return;
    }
    const seq = task.writeData;
    const verdict = seq === null
      ? 'outside-solicited'
      : seq.accept(ttt, bhs.readUInt32BE(DataOutField.DATASN), bhs.readUInt32BE(DataOutField.BUFFER_OFFSET),
        (flagsOf(bhs) & FLAG_F) !== 0, pdu.data);
    if (verdict === 'accepted') {
      task.checkComplete();
    } else if (verdict === 'burst-done') {
      if (ttt !== NO_TAG) this.tasks.r2tClosed(ttt);
      this.solicit(task);
      task.checkComplete();
    } else {
      this.dataSequenceError(task, bhs, DATA_OUT_ERRORS[verdict]);
    }
  }

  /**
   * A Data-Out that breaks its sequence (DataSN, offset, F bit, TTT, length).
   * The stream itself is intact, so the connection survives: the PDU is
   * rejected (protocol error, RFC 7143 §11.17.1), which fails the command at
   * the initiator, and the task is terminated here without a response.
   * Later Data-Out for the same ITT is dropped as data for a finished task.
   */
  private dataSequenceError(task: IscsiTask, bhs: Buffer, why: string): void {
    this.log.warn({ itt: task.itt }, `Data-Out rejected: ${why}`);
    this.out.reject(bhs, RejectReason.PROTOCOL_ERROR);
    task.abort(new TransportError('PROTOCOL', why));
    if (!task.delivered) this.finishTask(task);
  }

  // ---- NOP --------------------------------------------------------------

  private onNopOut(pdu: Pdu, ffp: Established): void {
    const bhs = pdu.bhs;
    const itt = ittOf(bhs);
    const ttt = tttOf(bhs);
    if (ttt !== NO_TAG) {
      // Answer to our ping.
      if (ttt === this.pingTtt) this.pingTtt = NO_TAG;
      if (itt === NO_TAG) return;
    }
    if (itt === NO_TAG) {
      if (!isImmediate(bhs)) this.out.reject(bhs, RejectReason.PROTOCOL_ERROR);
      return;
    }
    const data = Buffer.from(pdu.data.subarray(0, ffp.params.maxRecvDataSegmentLength));
    const lun = Buffer.from(bhs.subarray(8, 16));
    this.admitCommand(pdu, ffp.session, () => {
      const h = encodeNopIn({ itt, ttt: NO_TAG, lun, dataLength: data.length }, this.out.withStatus());
      this.out.send(h, data);
    });
  }

  /** Called by the server's shared timer. */
  tick(now: number): void {
    if (this.state !== 'ffp') return;
    const limits = this.ctx.limits;
    if (this.pingTtt !== NO_TAG) {
      if (now - this.pingSentAt > limits.nopInTimeoutMs) {
        this.log.warn('initiator did not answer NOP-In: dropping connection');
        this.drop('nop timeout');
      }
      return;
    }
    if (limits.nopInIntervalMs > 0 && now - this.lastActivity > limits.nopInIntervalMs) {
      this.pingTtt = this.tasks.allocTtt();
      this.pingSentAt = now;
      const h = encodeNopIn({ itt: NO_TAG, ttt: this.pingTtt, lun: Buffer.alloc(8), dataLength: 0 }, this.out.noStatus());
      this.out.send(h);
    }
  }

  // ---- Task management --------------------------------------------------

  private async onTaskManagement(bhs: Buffer, session: Session): Promise<void> {
    const response = await executeTaskManagement(bhs, session, {
      task: (itt) => this.tasks.get(itt),
      abortTasks: (match) => this.abortTasks(match),
    });
    if (this.state === 'closed') return;
    this.out.send(encodeTmfResponse({ itt: ittOf(bhs), response }, this.out.withStatus()));
    if ((flagsOf(bhs) & 0x7f) === TmfFunction.TARGET_COLD_RESET && response === TmfResponse.COMPLETE) {
      // A cold reset ends every session of the target (RFC 7143 §11.5.1).
      this.ctx.dropTargetSessions(session.target!.name, 'target cold reset');
    }
  }

  /** Abort this connection's tasks that match and wait until they have settled. */
  private async abortTasks(match: (t: IscsiTask) => boolean): Promise<void> {
    const victims = this.tasks.list().filter(match);
    for (const t of victims) t.abort(new TransportError('ABORTED', 'task management'));
    // A task that never reached the SCSI layer settles here.
    for (const t of victims) if (!t.delivered) this.finishTask(t);
    await Promise.all(victims.map((t) => t.settled));
  }

  // ---- Text (SendTargets) -----------------------------------------------

  private onTextRequest(pdu: Pdu, ffp: Established): void {
    const bhs = pdu.bhs;
    const itt = ittOf(bhs);
    const ttt = tttOf(bhs);
    const lun = Buffer.from(bhs.subarray(8, 16));
    const mrdsl = ffp.params.maxRecvDataSegmentLength;
    let body: Buffer;
    if (ttt !== NO_TAG) {
      if (!this.textContinuation || this.textContinuation.ttt !== ttt) {
        this.out.reject(bhs, RejectReason.INVALID_PDU_FIELD);
        return;
      }
      body = this.textContinuation.rest;
      this.textContinuation = null;
    } else {
      if (flagsOf(bhs) & FLAG_C) {
        // Multi-PDU text requests are not needed for SendTargets; answer empty and wait for the rest.
        this.out.send(encodeTextResponse({ itt, ttt: NO_TAG, final: false, cont: false, lun, dataLength: 0 }, this.out.withStatus()));
        return;
      }
      body = buildSendTargetsResponse(pdu.data, ffp.session, this.ctx);
    }
    if (body.length > mrdsl) {
      const contTtt = this.tasks.allocTtt();
      this.textContinuation = { ttt: contTtt, rest: body.subarray(mrdsl) };
      const part = body.subarray(0, mrdsl);
      this.out.send(encodeTextResponse({ itt, ttt: contTtt, final: false, cont: true, lun, dataLength: part.length }, this.out.withStatus()), part);
      return;
    }
    this.out.send(encodeTextResponse({ itt, ttt: NO_TAG, final: true, cont: false, lun, dataLength: body.length }, this.out.withStatus()), body);
  }

  // ---- Logout -----------------------------------------------------------

  private async onLogout(bhs: Buffer, ownCid: number): Promise<void> {
    const reason = flagsOf(bhs) & 0x7f;
    const itt = ittOf(bhs);
    const cid = bhs.readUInt16BE(LogoutField.CID);
    let response = 0;
    if (reason === 2) {
      response = 2; // connection recovery not supported at ERL 0
    } else if (reason === 1 && cid !== ownCid) {
      response = 1; // CID not found: one connection per session
    }
    if (response !== 0) {
      this.out.send(encodeLogoutResponse({ itt, response, time2Wait: 0, time2Retain: 0 }, this.out.withStatus()));
      return;
    }
    this.state = 'logout';
    // Let commands already running finish and answer (bounded by the logout timeout).
    const limit = this.ctx.limits.logoutTimeoutMs;
    const pending = this.tasks.list().filter((t) => t.delivered).map((t) => t.settled);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(pending), new Promise((r) => (timer = setTimeout(r, limit)))]);
    clearTimeout(timer);
    if (this.socket.destroyed) return;
    this.out.send(encodeLogoutResponse({ itt, response: 0, time2Wait: 0, time2Retain: 0 }, this.out.withStatus()));
    this.log.info({ reason }, 'logout');
    this.socket.end();
    // The initiator closes its side; make sure we do not linger.
    setTimeout(() => this.socket.destroy(), limit).unref();
  }

  // ---- teardown ---------------------------------------------------------

  /** LoginPort: close the connection at once (after flushing what was queued). */
  drop(why: string): void {
    if (this.state === 'closed') return;
    this.log.info({ why }, 'dropping connection');
    this.framer.stop();
    this.abortAll();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  /** SessionConnection.shutdown: drop and wait until every task has settled. */
  async shutdown(reason: string): Promise<void> {
    const waits = this.tasks.list().map((t) => t.settled);
    this.drop(reason);
    await Promise.all(waits);
  }

  private abortAll(): void {
    for (const t of this.tasks.list()) {
      t.abort(new TransportError('CONNECTION_LOST', 'connection closed'));
      if (!t.delivered) this.finishTask(t);
    }
  }

  private onClosed(): void {
    const wasClosed = this.state === 'closed';
    this.framer.stop();
    this.abortAll();
    this.state = 'closed';
    this.out.close();
    if (!wasClosed) {
      this.ctx.connectionClosed(this);
      this.log.debug('connection closed');
    }
    this.resolveClosed();
  }
}
