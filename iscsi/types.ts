/** Shapes shared by the iSCSI transport modules. */
import type { ScsiDevice } from '../scsi/types';
import type { NegotiationState } from './negotiation';

/** The operational keys that stay in force after login (RFC 7143 §13), as negotiated. */
export const NEGOTIATED_KEYS = [
  'headerDigest',
  'dataDigest',
  'maxRecvDataSegmentLength',
  'targetMaxRecvDataSegmentLength',
  'maxBurstLength',
  'firstBurstLength',
  'initialR2T',
  'immediateData',
  'maxOutstandingR2T',
  'maxConnections',
  'dataPDUInOrder',
  'dataSequenceInOrder',
  'errorRecoveryLevel',
  'defaultTime2Wait',
  'defaultTime2Retain',
] as const;

/**
 * A frozen snapshot of the negotiation result for the data path.
 * `maxRecvDataSegmentLength` is the initiator's (bounds what we send);
 * `targetMaxRecvDataSegmentLength` is ours (bounds Data-Out and immediate data).
 */
export type NegotiatedParams = Readonly<Pick<NegotiationState, (typeof NEGOTIATED_KEYS)[number]>>;

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
  /**
   * SendTargets announces these instead of `portals` x `portalGroupTag`: each
   * address with its own portal group tag (a cluster announces every node's
   * portal, RFC 7143 13.8 TargetAddress "address,tag").
   */
  announce?: Array<{ portal: string; tag: number }>;
  /** The relative target port of this target's portal group (VPD 83h, RTPG, PR); default 1. */
  relativeTargetPort?: number;
  device: ScsiDevice;
  chap?: ChapCredentials;
  /**
   * Per-initiator admission (ACL entries, composer: src/access.ts): who may
   * log in and with which CHAP credentials (an entry's own, else `chap`).
   * Read at every login and SendTargets, so a reload applies at once.
   * Without it every initiator may log in.
   */
  acl?: TargetAcl;
}

export interface TargetAcl {
  mayLogin(initiatorName: string): boolean;
  chapFor(initiatorName: string): ChapCredentials | undefined;
}

export interface IscsiLimits {
  /** Commands per session (MaxCmdSN window). */
  queueDepth: number;
  /**
   * The most write data buffered for one command (bytes): handed to the core as
   * ScsiTask.maxDataOutLength, which refuses a command asking for more.
   */
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
  /** TCP connections at once, in any phase; more are closed when accepted. Default: 2 x maxSessions. */
  maxConnections: number;
  /** TCP connections at once from one initiator address, in any phase (floods and slow-loris logins from one host). */
  maxConnectionsPerAddress: number;
  /**
   * Logout (RFC 7143 §11.14): how long commands still running may take before
   * the response goes out, and how long the initiator then has to close (ms).
   */
  logoutTimeoutMs: number;
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
  maxConnections: 512,
  maxConnectionsPerAddress: 128,
  logoutTimeoutMs: 5000,
};
