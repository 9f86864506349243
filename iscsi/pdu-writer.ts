/**
 * The sending side of one connection: PDUs out with their digests and
 * padding, corked until the end of the event-loop turn, and the sequence
 * numbers they carry (StatSN advances with status; ExpCmdSN/MaxCmdSN are
 * the session's window, RFC 7143 §4.2.2.1). Login builds its own sequence
 * numbers until the connection enters full feature phase.
 */
import type { Socket } from 'node:net';
import { crc32c, digestBytes } from './digest';
import { BHS_LENGTH, RejectReason, SequenceNumbers, encodeReject, padLength, snAdd } from './pdu';
import type { Session } from './session';
import type { NegotiatedParams } from './types';

const PAD = Buffer.alloc(4);

export class PduWriter {
  private statSN = 0;
  /** The session whose CmdSN window the PDUs advertise; null during login. */
  private session: Session | null = null;
  /** Digests in force (from the negotiated keys, once in full feature phase). */
  private headerDigest = false;
  private dataDigest = false;
  private corked = false;
  private open = true;

  constructor(private readonly socket: Socket) {}

  /** Full feature phase: the session's window, its digests, and the StatSN login left off at. */
  start(session: Session, params: NegotiatedParams, statSN: number): void {
    this.session = session;
    this.headerDigest = params.headerDigest;
    this.dataDigest = params.dataDigest;
    this.statSN = statSN;
  }

  /** Nothing more goes out (the connection closed). */
  close(): void {
    this.open = false;
  }

  /** Sequence numbers for a PDU that carries status: StatSN advances. */
  withStatus(): SequenceNumbers {
    const s = this.session;
    const sn = { statSN: this.statSN, expCmdSN: s ? s.expCmdSN : 0, maxCmdSN: s ? s.maxCmdSN : 0 };
    this.statSN = snAdd(this.statSN, 1);
    return sn;
  }

  /** Sequence numbers for a PDU without status (R2T, Data-In without S, ping): StatSN not advanced. */
  noStatus(): SequenceNumbers {
    const s = this.session;
    return { statSN: this.statSN, expCmdSN: s ? s.expCmdSN : 0, maxCmdSN: s ? s.maxCmdSN : 0 };
  }

  /** Write one PDU: header (+digest), data (+padding, +digest). Corks until the end of the tick. */
  send(header: Buffer, data?: Buffer): void {
    const sock = this.socket;
    if (!this.open || sock.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      sock.cork();
      // Uncork in the check phase: every completion of this event-loop turn (thread-pool
      // callbacks arrive together) goes out in one writev instead of one syscall each.
      setImmediate(() => {
        this.corked = false;
        sock.uncork();
      });
    }
    sock.write(header);
    if (this.headerDigest) sock.write(digestBytes(crc32c(header)));
    if (data && data.length > 0) {
      sock.write(data);
      const pad = padLength(data.length);
      if (pad) sock.write(PAD.subarray(0, pad));
      if (this.dataDigest) sock.write(digestBytes(pad ? crc32c(data, PAD.subarray(0, pad)) : crc32c(data)));
    }
  }

  /** Reject a PDU, echoing its header (RFC 7143 §11.17). */
  reject(bhs: Buffer, reason: RejectReason): void {
    const copy = Buffer.from(bhs.subarray(0, BHS_LENGTH));
    this.send(encodeReject({ reason, dataSnOrR2tSn: 0, dataLength: copy.length }, this.withStatus()), copy);
  }
}
