/** Shapes shared by the iSCSI transport modules. */
import type { ScsiDevice } from '../scsi/types';

/** Operational parameters in force for a connection/session after login (RFC 7143 §13). */
export interface NegotiatedParams {
  headerDigest: boolean;
  dataDigest: boolean;
  /** What the initiator can receive: bounds our Data-In/Text/NOP-In data segments. */
  initiatorMaxRecvDataSegmentLength: number;
  /** What we declared we can receive: bounds Data-Out and immediate data. */
  targetMaxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  initialR2T: boolean;
  immediateData: boolean;
  maxOutstandingR2T: number;
  maxConnections: number;
  dataPDUInOrder: boolean;
  dataSequenceInOrder: boolean;
  errorRecoveryLevel: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
}

/** CHAP credentials: what the initiator must prove, and optionally what we prove back (mutual). */
export interface ChapCredentials {
  user: string;
  secret: string;
  mutual?: { user: string; secret: string };
}

/** One iSCSI target node as the transport sees it. */
export interface TargetEntry {
  name: string;
  alias?: string;
  portalGroupTag: number;
  /** Addresses announced by SendTargets, "host:port". */
  portals: string[];
  device: ScsiDevice;
  chap?: ChapCredentials;
  /** Initiator names allowed to log in; undefined = everyone. */
  allowedInitiators?: string[];
}

export interface IscsiLimits {
  /** Commands per session (MaxCmdSN window). */
  queueDepth: number;
  /** Largest EDTL accepted for a write before the data is refused (bytes). */
  maxWriteBuffer: number;
  maxSessions: number;
  maxSessionsPerInitiator: number;
  /** Login must complete within this many ms. */
  loginTimeoutMs: number;
  /** Send a NOP-In ping after this many ms without traffic (0 = never). */
  nopInIntervalMs: number;
  /** Drop the connection when a ping is unanswered this long. */
  nopInTimeoutMs: number;
  /** Delay before answering a failed authentication (ms). */
  authFailureDelayMs: number;
}

export const DEFAULT_LIMITS: IscsiLimits = {
  queueDepth: 128,
  maxWriteBuffer: 32 * 1024 * 1024,
  maxSessions: 256,
  maxSessionsPerInitiator: 64,
  loginTimeoutMs: 15000,
  nopInIntervalMs: 10000,
  nopInTimeoutMs: 20000,
  authFailureDelayMs: 1000,
};
