/**
 * Login/Text keys (RFC 7143 §6.2, §13; RFC 7144 §2.1 for iSCSIProtocolLevel):
 * KEY_TABLE is the one place that says which keys exist, who may send them,
 * when, how their result is computed, their default and valid range, and
 * which config field holds the target's own preference; TargetKeyConfig is
 * that preference, validated by a schema whose ranges come from the table.
 * negotiation.ts walks an initiator's request through the table.
 */
import { z } from 'zod';

// ---------------------------------------------------------------------------
// The key table

/** RFC 7143 §6.2 result functions, plus declarations that need no answer. */
export type KeyKind = 'list' | 'boolean-and' | 'boolean-or' | 'numeric-min' | 'numeric-max' | 'declarative';

/**
 * RFC 7143 §13 "Use": IO = initialize only (login of each connection),
 * LO = leading connection only, ALL = login and full feature phase,
 * FFP = full feature phase only, security = SecurityNegotiation stage only.
 */
export type KeyPhase = 'IO' | 'LO' | 'ALL' | 'FFP' | 'security';
export type KeyScope = 'connection' | 'session';
export type KeySenders = 'initiator' | 'target' | 'both';
export type SessionType = 'Discovery' | 'Normal';
export type DigestPolicy = 'optional' | 'required' | 'never';

/** What the target is prepared to do; validated by targetKeyConfigSchema. */
export interface TargetKeyConfig {
  /** optional: CRC32C or None in the initiator's order; required: CRC32C only; never: None only. */
  headerDigest: DigestPolicy;
  dataDigest: DigestPolicy;
  /** Our receive limit, declared to the initiator (bounds Data-Out and immediate data). */
  maxRecvDataSegmentLength: number;
  maxBurstLength: number;
  firstBurstLength: number;
  maxOutstandingR2T: number;
  maxConnections: number;
  /** We implement ERL 0 only. */
  errorRecoveryLevel: number;
  defaultTime2Wait: number;
  defaultTime2Retain: number;
  /** Our InitialR2T preference (OR): false = we accept the initiator's No. */
  initialR2T: boolean;
  /** Our ImmediateData preference (AND). */
  immediateData: boolean;
  /** OR keys: we need in-order data, so these stay true. */
  dataPDUInOrder: boolean;
  dataSequenceInOrder: boolean;
  /** Highest iSCSIProtocolLevel we implement (1 = RFC 7143). */
  iSCSIProtocolLevel: number;
  /** TaskReporting values we implement, in our preference order. */
  taskReporting: readonly string[];
  /** Sent in the first login response of a Normal session (RFC 7143 §13.9). */
  targetPortalGroupTag?: number;
  /** Declared with MaxRecvDataSegmentLength when set. */
  targetAlias?: string;
}

export const DEFAULT_TARGET_KEY_CONFIG: Readonly<TargetKeyConfig> = Object.freeze({
  headerDigest: 'optional',
  dataDigest: 'optional',
  maxRecvDataSegmentLength: 262144,
  maxBurstLength: 1048576,
  firstBurstLength: 262144,
  maxOutstandingR2T: 16,
  maxConnections: 1,
  errorRecoveryLevel: 0,
  defaultTime2Wait: 2,
  defaultTime2Retain: 20,
  initialR2T: false,
  immediateData: true,
  dataPDUInOrder: true,
  dataSequenceInOrder: true,
  iSCSIProtocolLevel: 1,
  taskReporting: Object.freeze(['RFC3720']),
} satisfies TargetKeyConfig);

type NumericConfigField = {
  [K in keyof TargetKeyConfig]-?: TargetKeyConfig[K] extends number | undefined ? K : never;
}[keyof TargetKeyConfig];
type BooleanConfigField = {
  [K in keyof TargetKeyConfig]-?: TargetKeyConfig[K] extends boolean ? K : never;
}[keyof TargetKeyConfig];

interface KeyDefBase {
  readonly name: string;
  readonly phase: KeyPhase;
  readonly scope: KeyScope;
  readonly senders: KeySenders;
  /** RFC 7143 "Irrelevant when: SessionType=Discovery". */
  readonly irrelevantInDiscovery: boolean;
  /** Obsoleted by RFC 7143 §13.26. */
  readonly obsolete?: boolean;
  /** Clause of RFC 7143 (or RFC 7144) that defines the key. */
  readonly rfc: string;
}

export interface ListKeyDef extends KeyDefBase {
  readonly kind: 'list';
  readonly default: string;
  /** Every value the standard defines. */
  readonly values: readonly string[];
}

export interface BooleanKeyDef extends KeyDefBase {
  readonly kind: 'boolean-and' | 'boolean-or';
  readonly default: boolean;
  /** Config field holding the target's own value. */
  readonly preference?: BooleanConfigField;
}

export interface NumericKeyDef extends KeyDefBase {
  readonly kind: 'numeric-min' | 'numeric-max';
  readonly default: number;
  readonly min: number;
  readonly max: number;
  readonly preference?: NumericConfigField;
}

export type DeclarativeValueType =
  | 'number'
  | 'iscsi-name'
  | 'session-type'
  | 'utf8'
  | 'target-address'
  | 'text'
  | 'binary';

export interface DeclarativeKeyDef extends KeyDefBase {
  readonly kind: 'declarative';
  readonly valueType: DeclarativeValueType;
  readonly default?: number | string;
  readonly min?: number;
  readonly max?: number;
  readonly preference?: NumericConfigField;
}

export type KeyDef = ListKeyDef | BooleanKeyDef | NumericKeyDef | DeclarativeKeyDef;

const U24_MAX = 16777215; // 2^24 - 1

const defs: KeyDef[] = [
  // --- security (RFC 7143 §12, §13.1); handled by chap.ts
  { name: 'AuthMethod', kind: 'list', phase: 'security', scope: 'connection', senders: 'both', irrelevantInDiscovery: false,
    default: 'None', values: ['KRB5', 'SRP', 'CHAP', 'None'], rfc: '§12.1' },
  { name: 'CHAP_A', kind: 'list', phase: 'security', scope: 'connection', senders: 'both', irrelevantInDiscovery: false,
    default: '5', values: ['5'], rfc: '§12.1.3' },
  { name: 'CHAP_I', kind: 'declarative', valueType: 'number', min: 0, max: 255, phase: 'security', scope: 'connection',
    senders: 'both', irrelevantInDiscovery: false, rfc: '§12.1.3' },
  { name: 'CHAP_C', kind: 'declarative', valueType: 'binary', phase: 'security', scope: 'connection', senders: 'both',
    irrelevantInDiscovery: false, rfc: '§12.1.3' },
  { name: 'CHAP_N', kind: 'declarative', valueType: 'utf8', phase: 'security', scope: 'connection', senders: 'both',
    irrelevantInDiscovery: false, rfc: '§12.1.3' },
  { name: 'CHAP_R', kind: 'declarative', valueType: 'binary', phase: 'security', scope: 'connection', senders: 'both',
    irrelevantInDiscovery: false, rfc: '§12.1.3' },

  // --- operational (RFC 7143 §13)
  { name: 'HeaderDigest', kind: 'list', phase: 'IO', scope: 'connection', senders: 'both', irrelevantInDiscovery: false,
    default: 'None', values: ['CRC32C', 'None'], rfc: '§13.1' },
  { name: 'DataDigest', kind: 'list', phase: 'IO', scope: 'connection', senders: 'both', irrelevantInDiscovery: false,
    default: 'None', values: ['CRC32C', 'None'], rfc: '§13.1' },
  { name: 'MaxConnections', kind: 'numeric-min', phase: 'LO', scope: 'session', senders: 'both', irrelevantInDiscovery: true,
    default: 1, min: 1, max: 65535, preference: 'maxConnections', rfc: '§13.2' },
  { name: 'SendTargets', kind: 'declarative', valueType: 'utf8', phase: 'FFP', scope: 'session', senders: 'initiator',
    irrelevantInDiscovery: false, rfc: '§13.3' },
  { name: 'TargetName', kind: 'declarative', valueType: 'iscsi-name', phase: 'IO', scope: 'session', senders: 'both',
    irrelevantInDiscovery: false, rfc: '§13.4' },
  { name: 'InitiatorName', kind: 'declarative', valueType: 'iscsi-name', phase: 'IO', scope: 'session', senders: 'initiator',
    irrelevantInDiscovery: false, rfc: '§13.5' },
  { name: 'TargetAlias', kind: 'declarative', valueType: 'utf8', phase: 'ALL', scope: 'session', senders: 'target',
    irrelevantInDiscovery: false, rfc: '§13.6' },
  { name: 'InitiatorAlias', kind: 'declarative', valueType: 'utf8', phase: 'ALL', scope: 'session', senders: 'initiator',
    irrelevantInDiscovery: false, rfc: '§13.7' },
  { name: 'TargetAddress', kind: 'declarative', valueType: 'target-address', phase: 'ALL', scope: 'session',
    senders: 'target', irrelevantInDiscovery: false, rfc: '§13.8' },
  { name: 'TargetPortalGroupTag', kind: 'declarative', valueType: 'number', min: 0, max: 65535, phase: 'IO',
    scope: 'session', senders: 'target', irrelevantInDiscovery: false, preference: 'targetPortalGroupTag', rfc: '§13.9' },
  { name: 'InitialR2T', kind: 'boolean-or', phase: 'LO', scope: 'session', senders: 'both', irrelevantInDiscovery: true,
    default: true, preference: 'initialR2T', rfc: '§13.10' },
  { name: 'ImmediateData', kind: 'boolean-and', phase: 'LO', scope: 'session', senders: 'both', irrelevantInDiscovery: true,
    default: true, preference: 'immediateData', rfc: '§13.11' },
  { name: 'MaxRecvDataSegmentLength', kind: 'declarative', valueType: 'number', phase: 'ALL', scope: 'connection',
    senders: 'both', irrelevantInDiscovery: false, default: 8192, min: 512, max: U24_MAX,
    preference: 'maxRecvDataSegmentLength', rfc: '§13.12' },
  { name: 'MaxBurstLength', kind: 'numeric-min', phase: 'LO', scope: 'session', senders: 'both', irrelevantInDiscovery: true,
    default: 262144, min: 512, max: U24_MAX, preference: 'maxBurstLength', rfc: '§13.13' },
  { name: 'FirstBurstLength', kind: 'numeric-min', phase: 'LO', scope: 'session', senders: 'both', irrelevantInDiscovery: true,
    default: 65536, min: 512, max: U24_MAX, preference: 'firstBurstLength', rfc: '§13.14' },
  { name: 'DefaultTime2Wait', kind: 'numeric-max', phase: 'LO', scope: 'session', senders: 'both', irrelevantInDiscovery: false,
    default: 2, min: 0, max: 3600, preference: 'defaultTime2Wait', rfc: '§13.15' },
  { name: 'DefaultTime2Retain', kind: 'numeric-min', phase: 'LO', scope: 'session', senders: 'both',
    irrelevantInDiscovery: false, default: 20, min: 0, max: 3600, preference: 'defaultTime2Retain', rfc: '§13.16' },
  { name: 'MaxOutstandingR2T', kind: 'numeric-min', phase: 'LO', scope: 'session', senders: 'both',
    irrelevantInDiscovery: true, default: 1, min: 1, max: 65535, preference: 'maxOutstandingR2T', rfc: '§13.17' },
  { name: 'DataPDUInOrder', kind: 'boolean-or', phase: 'LO', scope: 'session', senders: 'both', irrelevantInDiscovery: true,
    default: true, preference: 'dataPDUInOrder', rfc: '§13.18' },
  { name: 'DataSequenceInOrder', kind: 'boolean-or', phase: 'LO', scope: 'session', senders: 'both',
    irrelevantInDiscovery: true, default: true, preference: 'dataSequenceInOrder', rfc: '§13.19' },
  { name: 'ErrorRecoveryLevel', kind: 'numeric-min', phase: 'LO', scope: 'session', senders: 'both',
    irrelevantInDiscovery: false, default: 0, min: 0, max: 2, preference: 'errorRecoveryLevel', rfc: '§13.20' },
  { name: 'SessionType', kind: 'declarative', valueType: 'session-type', phase: 'LO', scope: 'session',
    senders: 'initiator', irrelevantInDiscovery: false, default: 'Normal', rfc: '§13.21' },
  { name: 'TaskReporting', kind: 'list', phase: 'LO', scope: 'session', senders: 'both', irrelevantInDiscovery: true,
    default: 'RFC3720', values: ['RFC3720', 'ResponseFence', 'FastAbort'], rfc: '§13.23' },
  { name: 'iSCSIProtocolLevel', kind: 'numeric-min', phase: 'LO', scope: 'session', senders: 'both',
    irrelevantInDiscovery: true, default: 0, min: 0, max: 31, preference: 'iSCSIProtocolLevel', rfc: 'RFC 7144 §2.1' },
  { name: 'X#NodeArchitecture', kind: 'declarative', valueType: 'utf8', phase: 'LO', scope: 'session', senders: 'both',
    irrelevantInDiscovery: false, rfc: '§13.25' },

  // --- obsolete (RFC 7143 §13.26)
  { name: 'OFMarker', kind: 'boolean-and', phase: 'IO', scope: 'connection', senders: 'both', irrelevantInDiscovery: false,
    default: false, obsolete: true, rfc: '§13.26' },
  { name: 'IFMarker', kind: 'boolean-and', phase: 'IO', scope: 'connection', senders: 'both', irrelevantInDiscovery: false,
    default: false, obsolete: true, rfc: '§13.26' },
  { name: 'OFMarkInt', kind: 'numeric-min', phase: 'IO', scope: 'connection', senders: 'both', irrelevantInDiscovery: false,
    default: 2048, min: 1, max: 65535, obsolete: true, rfc: '§13.26' },
  { name: 'IFMarkInt', kind: 'numeric-min', phase: 'IO', scope: 'connection', senders: 'both', irrelevantInDiscovery: false,
    default: 2048, min: 1, max: 65535, obsolete: true, rfc: '§13.26' },
];

/** Every key this target knows, by exact (case-sensitive) name. */
export const KEY_TABLE: ReadonlyMap<string, KeyDef> = new Map(defs.map((d) => [d.name, Object.freeze(d)]));

/**
 * Private (`X-`) and public (`X#`) extension keys (RFC 7143 §13.5.1/2) that
 * are not in KEY_TABLE are answered NotUnderstood.
 */
export function isExtensionKey(key: string): boolean {
  return key.startsWith('X-') || key.startsWith('X#');
}

/** AuthMethod and CHAP_*: negotiated by chap.ts during SecurityNegotiation. */
export function isSecurityKey(key: string): boolean {
  return KEY_TABLE.get(key)?.phase === 'security';
}

// ---------------------------------------------------------------------------
// Target configuration

const num = (def: string) => {
  const d = KEY_TABLE.get(def) as NumericKeyDef | DeclarativeKeyDef;
  return z.number().int().min(d.min!).max(d.max!);
};

/** Schema for TargetKeyConfig; ranges come from KEY_TABLE. */
export const targetKeyConfigSchema = z
  .object({
    headerDigest: z.enum(['optional', 'required', 'never']),
    dataDigest: z.enum(['optional', 'required', 'never']),
    maxRecvDataSegmentLength: num('MaxRecvDataSegmentLength'),
    maxBurstLength: num('MaxBurstLength'),
    firstBurstLength: num('FirstBurstLength'),
    maxOutstandingR2T: num('MaxOutstandingR2T'),
    maxConnections: num('MaxConnections'),
    errorRecoveryLevel: z.literal(0), // ERL 1/2 are not implemented
    defaultTime2Wait: num('DefaultTime2Wait'),
    defaultTime2Retain: num('DefaultTime2Retain'),
    initialR2T: z.boolean(),
    immediateData: z.boolean(),
    dataPDUInOrder: z.literal(true), // the data mover needs in-order data
    dataSequenceInOrder: z.literal(true),
    iSCSIProtocolLevel: z.number().int().min(0).max(1),
    taskReporting: z.array(z.enum(['RFC3720'])).min(1),
    targetPortalGroupTag: num('TargetPortalGroupTag').optional(),
    targetAlias: z
      .string()
      .refine((s) => Buffer.byteLength(s) <= 255 && !s.includes('\0'), 'at most 255 bytes, no NUL')
      .optional(),
  })
  .refine((c) => c.firstBurstLength <= c.maxBurstLength, {
    message: 'firstBurstLength must not exceed maxBurstLength (RFC 7143 §13.14)',
    path: ['firstBurstLength'],
  });

export type TargetKeyConfigResult =
  | { ok: true; config: Readonly<TargetKeyConfig> }
  | { ok: false; errors: Array<{ path: string; message: string }> };

/** Validate overrides on top of DEFAULT_TARGET_KEY_CONFIG; returns a frozen config. */
export function validateTargetKeyConfig(overrides: unknown = {}): TargetKeyConfigResult {
  const merged = typeof overrides === 'object' && overrides !== null
    ? { ...DEFAULT_TARGET_KEY_CONFIG, ...(overrides as object) }
    : overrides;
  const r = targetKeyConfigSchema.safeParse(merged);
  if (!r.success) {
    return { ok: false, errors: r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })) };
  }
  return { ok: true, config: Object.freeze({ ...r.data, taskReporting: Object.freeze([...r.data.taskReporting]) }) };
}
