/**
 * Login/Text operational keys (RFC 7143 §6.2, §13; RFC 7144 §2.1 for
 * iSCSIProtocolLevel) and the target side of their negotiation.
 *
 * KEY_TABLE is the one place that says which keys exist, who may send them,
 * when, how their result is computed, their default and valid range, and
 * which config field holds the target's own preference. negotiateOperational
 * walks an initiator request through it and produces the target's answers.
 *
 * Policy choices where RFC 7143 leaves room (each marked in the code):
 *  - Boolean answers are always sent, even when optional (§6.2.3).
 *  - IFMarker/OFMarker are answered "No" (§13.26 allows it instead of Reject;
 *    RFC 3720 initiators expect an AND result); IFMarkInt/OFMarkInt "Reject".
 *  - LO keys on a non-leading connection are answered Reject (the session's
 *    value stands).
 *  - Operational keys offered during SecurityNegotiation are negotiated as
 *    usual; security keys (AuthMethod, CHAP_*) are left to chap.ts there and
 *    are a protocol error in the operational stage.
 */
import { z } from 'zod';
import {
  IRRELEVANT,
  NOT_UNDERSTOOD,
  REJECT,
  RESERVED_VALUES,
  encodeBooleanValue,
  isTextValue,
  parseBooleanValue,
  parseBoundedNumber,
  parseListValue,
  type TextPair,
} from './text';
import { isValidIscsiName } from './names';

// ---------------------------------------------------------------------------
// Login status (RFC 7143 §11.13.5)

export interface LoginStatus {
  readonly statusClass: number;
  readonly statusDetail: number;
}

export const LOGIN_STATUS = {
  INITIATOR_ERROR: { statusClass: 0x02, statusDetail: 0x00 },
  AUTHENTICATION_FAILURE: { statusClass: 0x02, statusDetail: 0x01 },
  AUTHORIZATION_FAILURE: { statusClass: 0x02, statusDetail: 0x02 },
  TARGET_NOT_FOUND: { statusClass: 0x02, statusDetail: 0x03 },
  TARGET_REMOVED: { statusClass: 0x02, statusDetail: 0x04 },
  UNSUPPORTED_VERSION: { statusClass: 0x02, statusDetail: 0x05 },
  TOO_MANY_CONNECTIONS: { statusClass: 0x02, statusDetail: 0x06 },
  MISSING_PARAMETER: { statusClass: 0x02, statusDetail: 0x07 },
  CANT_INCLUDE_IN_SESSION: { statusClass: 0x02, statusDetail: 0x08 },
  SESSION_TYPE_NOT_SUPPORTED: { statusClass: 0x02, statusDetail: 0x09 },
  SESSION_DOES_NOT_EXIST: { statusClass: 0x02, statusDetail: 0x0a },
  INVALID_DURING_LOGIN: { statusClass: 0x02, statusDetail: 0x0b },
  TARGET_ERROR: { statusClass: 0x03, statusDetail: 0x00 },
  SERVICE_UNAVAILABLE: { statusClass: 0x03, statusDetail: 0x01 },
  OUT_OF_RESOURCES: { statusClass: 0x03, statusDetail: 0x02 },
} as const satisfies Record<string, LoginStatus>;

export interface LoginError extends LoginStatus {
  /** For logs only; never sent on the wire and never contains secrets. */
  readonly reason: string;
}

function loginError(status: LoginStatus, reason: string): LoginError {
  return { statusClass: status.statusClass, statusDetail: status.statusDetail, reason };
}

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
// Negotiation state

/**
 * Per-connection login negotiation state; negotiateOperational updates it in
 * place. The session-wide fields are only meaningful on the leading
 * connection; a non-leading connection inherits them from its session.
 */
export interface NegotiationState {
  headerDigest: boolean;
  dataDigest: boolean;
  /** The initiator's declared receive limit: bounds the PDUs we send. */
  maxRecvDataSegmentLength: number;
  /** Our limit as declared to the initiator (8192 until declared). */
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
  taskReporting: string;
  iSCSIProtocolLevel: number;

  /** undefined until the first request; then the declared or default type. */
  sessionType: SessionType | undefined;
  initiatorName: string | undefined;
  initiatorAlias: string | undefined;
  targetName: string | undefined;

  /** Keys the initiator has sent during this login (duplicates are errors). */
  readonly received: Set<string>;
  /** Keys the target has declared during this login. */
  readonly declared: Set<string>;
  /** Login requests processed so far on this connection. */
  requests: number;
}

export function createNegotiationState(): NegotiationState {
  return {
    headerDigest: false,
    dataDigest: false,
    maxRecvDataSegmentLength: 8192,
    targetMaxRecvDataSegmentLength: 8192,
    maxBurstLength: 262144,
    firstBurstLength: 65536,
    initialR2T: true,
    immediateData: true,
    maxOutstandingR2T: 1,
    maxConnections: 1,
    dataPDUInOrder: true,
    dataSequenceInOrder: true,
    errorRecoveryLevel: 0,
    defaultTime2Wait: 2,
    defaultTime2Retain: 20,
    taskReporting: 'RFC3720',
    iSCSIProtocolLevel: 0,
    sessionType: undefined,
    initiatorName: undefined,
    initiatorAlias: undefined,
    targetName: undefined,
    received: new Set(),
    declared: new Set(),
    requests: 0,
  };
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

// ---------------------------------------------------------------------------
// Negotiation

export interface NegotiateOptions {
  targetLimits: Readonly<TargetKeyConfig>;
  /** false for a connection joining an existing session (TSIH != 0). */
  isLeading: boolean;
  /**
   * Session type as the caller knows it. A SessionType key in the first
   * request takes precedence and is recorded in state.sessionType.
   */
  sessionType?: SessionType;
  stage: 'security' | 'operational';
  /** Does a target of this name exist (and may this portal serve it)? */
  targetExists?: (name: string) => boolean;
}

export interface NegotiateResult {
  response: TextPair[];
  error?: LoginError;
}

type Answer =
  | { kind: 'answer'; value: string; apply?: (s: NegotiationState) => void }
  | { kind: 'silent'; apply?: (s: NegotiationState) => void }
  | { kind: 'error'; error: LoginError };

interface RequestContext {
  readonly cfg: Readonly<TargetKeyConfig>;
  readonly sessionType: SessionType;
  readonly isLeading: boolean;
  /** Keys the target declared earlier in this login. */
  readonly declared: ReadonlySet<string>;
  /** InitialR2T/ImmediateData/MaxBurstLength as they stand after this request. */
  readonly initialR2T: boolean;
  readonly immediateData: boolean;
  readonly maxBurstLength: number;
  readonly targetExists?: (name: string) => boolean;
}

const answer = (value: string, apply?: (s: NegotiationState) => void): Answer => ({ kind: 'answer', value, apply });
const silent = (apply?: (s: NegotiationState) => void): Answer => ({ kind: 'silent', apply });
const fail = (status: LoginStatus, reason: string): Answer => ({ kind: 'error', error: loginError(status, reason) });

function digestSupported(policy: DigestPolicy): readonly string[] {
  if (policy === 'required') return ['CRC32C'];
  if (policy === 'never') return ['None'];
  return ['CRC32C', 'None'];
}

/** RFC 7143 §6.2.2: answer the first offered value we support, else Reject. */
function negotiateList(def: ListKeyDef, value: string, ctx: RequestContext): Answer {
  const offered = parseListValue(value);
  if (!offered || offered.some((v) => !isTextValue(v))) return answer(REJECT);
  let supported: readonly string[];
  let apply: (s: NegotiationState, v: string) => void;
  switch (def.name) {
    case 'HeaderDigest':
    case 'DataDigest': {
      const policy = def.name === 'HeaderDigest' ? ctx.cfg.headerDigest : ctx.cfg.dataDigest;
      supported = digestSupported(policy);
      const field = def.name === 'HeaderDigest' ? 'headerDigest' : 'dataDigest';
      apply = (s, v) => { s[field] = v === 'CRC32C'; };
      const pick = offered.find((v) => supported.includes(v));
      if (pick === undefined) {
        // The key stays None; if our config requires CRC32C we cannot go on.
        if (policy === 'required') {
          return fail(LOGIN_STATUS.INITIATOR_ERROR, `${def.name}: CRC32C required, initiator offered ${value}`);
        }
        return answer(REJECT);
      }
      return answer(pick, (s) => apply(s, pick));
    }
    case 'TaskReporting':
      supported = ctx.cfg.taskReporting;
      apply = (s, v) => { s.taskReporting = v; };
      break;
    default:
      return answer(REJECT);
  }
  const pick = offered.find((v) => supported.includes(v));
  return pick === undefined ? answer(REJECT) : answer(pick, (s) => apply(s, pick));
}

function setBoolean(s: NegotiationState, key: string, v: boolean): void {
  switch (key) {
    case 'InitialR2T': s.initialR2T = v; break;
    case 'ImmediateData': s.immediateData = v; break;
    case 'DataPDUInOrder': s.dataPDUInOrder = v; break;
    case 'DataSequenceInOrder': s.dataSequenceInOrder = v; break;
  }
}

function setNumber(s: NegotiationState, key: string, v: number): void {
  switch (key) {
    case 'MaxConnections': s.maxConnections = v; break;
    case 'MaxBurstLength': s.maxBurstLength = v; break;
    case 'FirstBurstLength': s.firstBurstLength = v; break;
    case 'DefaultTime2Wait': s.defaultTime2Wait = v; break;
    case 'DefaultTime2Retain': s.defaultTime2Retain = v; break;
    case 'MaxOutstandingR2T': s.maxOutstandingR2T = v; break;
    case 'ErrorRecoveryLevel': s.errorRecoveryLevel = v; break;
    case 'iSCSIProtocolLevel': s.iSCSIProtocolLevel = v; break;
  }
}

/** The result of a boolean key, or undefined when the offer is malformed. */
function booleanResult(def: BooleanKeyDef, value: string, cfg: Readonly<TargetKeyConfig>): boolean | undefined {
  const offered = parseBooleanValue(value);
  if (offered === undefined) return undefined;
  const ours = def.preference ? cfg[def.preference] : def.default;
  return def.kind === 'boolean-and' ? offered && ours : offered || ours;
}

/** The result of a numeric key, or undefined when malformed or out of range. */
function numericResult(def: NumericKeyDef, value: string, cfg: Readonly<TargetKeyConfig>): number | undefined {
  const n = parseBoundedNumber(value, def.min, def.max);
  if (!n.ok) return undefined;
  const ours = def.preference ? (cfg[def.preference] ?? def.default) : def.default;
  return def.kind === 'numeric-min' ? Math.min(n.value, ours) : Math.max(n.value, ours);
}

function negotiateDeclarative(def: DeclarativeKeyDef, value: string, ctx: RequestContext): Answer {
  switch (def.name) {
    case 'InitiatorName':
      if (!isValidIscsiName(value)) return fail(LOGIN_STATUS.INITIATOR_ERROR, 'InitiatorName is not a valid iSCSI name');
      return silent((s) => { s.initiatorName = value; });
    case 'InitiatorAlias':
      return silent((s) => { s.initiatorAlias = value; });
    case 'TargetName':
      if (ctx.sessionType === 'Discovery') return silent(); // not used in discovery sessions
      if (!isValidIscsiName(value)) return fail(LOGIN_STATUS.INITIATOR_ERROR, 'TargetName is not a valid iSCSI name');
      if (ctx.targetExists && !ctx.targetExists(value)) {
        return fail(LOGIN_STATUS.TARGET_NOT_FOUND, `target ${value} not found`);
      }
      return silent((s) => { s.targetName = value; });
    case 'SessionType':
      // Validated up front (resolveSessionType); nothing left to do here.
      return silent();
    case 'MaxRecvDataSegmentLength': {
      // Declarative (RFC 7143 §13.12): we must honour it, so a bad value fails the login.
      const n = parseBoundedNumber(value, def.min!, def.max!);
      if (!n.ok) return fail(LOGIN_STATUS.INITIATOR_ERROR, `MaxRecvDataSegmentLength ${n.reason}: ${value}`);
      return silent((s) => { s.maxRecvDataSegmentLength = n.value; });
    }
    case 'X#NodeArchitecture':
      return silent();
    default:
      return answer(REJECT);
  }
}

function negotiateKey(key: string, value: string, ctx: RequestContext): Answer {
  const def = KEY_TABLE.get(key);
  if (!def) return answer(NOT_UNDERSTOOD); // unknown, X- and unregistered X# keys
  if (def.phase === 'security') {
    return fail(LOGIN_STATUS.INITIATOR_ERROR, `${key} is only allowed in SecurityNegotiation`);
  }
  if (RESERVED_VALUES.has(value)) {
    // A reply to something we declared needs no further answer.
    if (ctx.declared.has(key)) return silent();
    // An answer where we made no offer: the initiator has lost track.
    return fail(LOGIN_STATUS.INITIATOR_ERROR, `${key}=${value} is not a valid offer`);
  }
  if (def.senders === 'target') return answer(REJECT); // TargetAlias, TargetAddress, TargetPortalGroupTag
  if (def.phase === 'FFP') return answer(REJECT); // SendTargets during login

  if (def.obsolete) {
    // RFC 7143 §13.26: IFMarker/OFMarker SHOULD get Reject, MAY get No; *MarkInt MUST get Reject.
    if (def.kind === 'boolean-and') return answer(parseBooleanValue(value) === undefined ? REJECT : 'No');
    return answer(REJECT);
  }

  if (def.phase === 'LO' && !ctx.isLeading && def.name !== 'SessionType') {
    return answer(REJECT); // leading-only key on a connection joining a session
  }
  if (def.irrelevantInDiscovery && ctx.sessionType === 'Discovery') return answer(IRRELEVANT);

  switch (def.kind) {
    case 'list':
      return negotiateList(def, value, ctx);
    case 'boolean-and':
    case 'boolean-or': {
      const r = booleanResult(def, value, ctx.cfg);
      if (r === undefined) return answer(REJECT);
      return answer(encodeBooleanValue(r), (s) => setBoolean(s, def.name, r));
    }
    case 'numeric-min':
    case 'numeric-max': {
      if (def.name === 'FirstBurstLength' && ctx.initialR2T && !ctx.immediateData) {
        return answer(IRRELEVANT); // RFC 7143 §13.14: no unsolicited data at all
      }
      let r = numericResult(def, value, ctx.cfg);
      if (r === undefined) return answer(REJECT);
      if (def.name === 'FirstBurstLength') r = Math.min(r, ctx.maxBurstLength); // §13.14: FBL <= MBL
      const result = r;
      return answer(String(result), (s) => setNumber(s, def.name, result));
    }
    case 'declarative':
      return negotiateDeclarative(def, value, ctx);
  }
}

/** SessionType from this request (first request only), the state, or the caller. */
function resolveSessionType(
  request: ReadonlyArray<readonly [string, string]>,
  state: NegotiationState,
  opts: NegotiateOptions,
): { ok: true; type: SessionType } | { ok: false; error: LoginError } {
  const entry = request.find(([k]) => k === 'SessionType');
  const known = state.sessionType ?? opts.sessionType;
  if (!entry) return { ok: true, type: known ?? 'Normal' };
  const value = entry[1];
  if (value !== 'Discovery' && value !== 'Normal') {
    const status = isTextValue(value) && value.length > 0
      ? LOGIN_STATUS.SESSION_TYPE_NOT_SUPPORTED
      : LOGIN_STATUS.INITIATOR_ERROR;
    return { ok: false, error: loginError(status, `SessionType=${value} not supported`) };
  }
  if (state.requests > 0 && value !== (state.sessionType ?? 'Normal')) {
    return { ok: false, error: loginError(LOGIN_STATUS.INITIATOR_ERROR, 'SessionType changed during login') };
  }
  if (state.requests === 0 && opts.sessionType !== undefined && opts.sessionType !== value) {
    return { ok: false, error: loginError(LOGIN_STATUS.INITIATOR_ERROR, 'SessionType differs from the session') };
  }
  return { ok: true, type: value };
}

/**
 * Answer one login request's keys (RFC 7143 §6.2, §13). Mutates `state`.
 * In the security stage, AuthMethod and CHAP_* are skipped: pass the same
 * pairs to the CHAP authenticator. On error the login must be rejected with
 * the returned status; `response` then holds whatever was answered so far.
 */
export function negotiateOperational(
  request: ReadonlyArray<readonly [string, string]>,
  state: NegotiationState,
  opts: NegotiateOptions,
): NegotiateResult {
  const response: TextPair[] = [];
  const cfg = opts.targetLimits;
  const firstRequest = state.requests === 0;

  // A key sent twice in one login is a protocol error (RFC 7143 §6.2).
  const thisRequest = new Set<string>();
  for (const [key] of request) {
    if (state.received.has(key) || thisRequest.has(key)) {
      return { response, error: loginError(LOGIN_STATUS.INITIATOR_ERROR, `key ${key} sent twice during login`) };
    }
    thisRequest.add(key);
  }

  const st = resolveSessionType(request, state, opts);
  if (!st.ok) return { response, error: st.error };
  const sessionType = st.type;

  if (firstRequest) {
    // RFC 7143 §13.5: InitiatorName MUST be in the first Login Request.
    if (!thisRequest.has('InitiatorName')) {
      return { response, error: loginError(LOGIN_STATUS.MISSING_PARAMETER, 'InitiatorName missing from first login request') };
    }
    // RFC 7143 §13.4: TargetName MUST be in the first request of a Normal session.
    if (sessionType === 'Normal' && !thisRequest.has('TargetName')) {
      return { response, error: loginError(LOGIN_STATUS.MISSING_PARAMETER, 'TargetName missing for a Normal session') };
    }
  }

  // Results that other keys depend on, as they stand after this request.
  const lookup = (name: string) => request.find(([k]) => k === name)?.[1];
  const boolAfter = (name: 'InitialR2T' | 'ImmediateData', current: boolean): boolean => {
    const v = lookup(name);
    if (v === undefined || !opts.isLeading) return current;
    return booleanResult(KEY_TABLE.get(name) as BooleanKeyDef, v, cfg) ?? current;
  };
  const mblOffer = lookup('MaxBurstLength');
  const mbl = mblOffer !== undefined && opts.isLeading
    ? (numericResult(KEY_TABLE.get('MaxBurstLength') as NumericKeyDef, mblOffer, cfg) ?? state.maxBurstLength)
    : state.maxBurstLength;
  const ctx: RequestContext = {
    cfg,
    sessionType,
    isLeading: opts.isLeading,
    declared: state.declared,
    initialR2T: boolAfter('InitialR2T', state.initialR2T),
    immediateData: boolAfter('ImmediateData', state.immediateData),
    maxBurstLength: mbl,
    targetExists: opts.targetExists,
  };

  const applies: Array<(s: NegotiationState) => void> = [];
  for (const [key, value] of request) {
    if (opts.stage === 'security' && isSecurityKey(key)) continue; // chap.ts answers these
    const a = negotiateKey(key, value, ctx);
    if (a.kind === 'error') return { response, error: a.error };
    if (a.kind === 'answer') response.push([key, a.value]);
    if (a.apply) applies.push(a.apply);
  }

  // Commit only once the whole request is acceptable.
  for (const key of thisRequest) state.received.add(key);
  for (const apply of applies) apply(state);
  state.sessionType = sessionType;
  state.requests++;
  if (state.firstBurstLength > state.maxBurstLength) state.firstBurstLength = state.maxBurstLength;

  if (firstRequest && sessionType === 'Normal' && cfg.targetPortalGroupTag !== undefined) {
    // RFC 7143 §13.9: TargetPortalGroupTag in the first login response.
    declare(response, 'TargetPortalGroupTag', String(cfg.targetPortalGroupTag));
    state.declared.add('TargetPortalGroupTag');
  }
  if (opts.stage === 'operational') for (const [k, v] of targetDeclarations(state, cfg)) declare(response, k, v);
  return { response };
}

/**
 * Add a declaration of ours to a response. A target-only key the initiator
 * sent (answered Reject above) would otherwise appear twice in one response,
 * which RFC 7143 §6.2 forbids: the declaration takes its place.
 */
function declare(response: TextPair[], key: string, value: string): void {
  const i = response.findIndex(([k]) => k === key);
  if (i >= 0) response[i] = [key, value];
  else response.push([key, value]);
}

/**
 * Declarations the target still owes on this connection: its own
 * MaxRecvDataSegmentLength (otherwise the initiator assumes 8192) and
 * TargetAlias. negotiateOperational adds them to its first operational-stage
 * response; call this directly only for a response it did not build.
 */
export function targetDeclarations(state: NegotiationState, cfg: Readonly<TargetKeyConfig>): TextPair[] {
  const out: TextPair[] = [];
  if (!state.declared.has('MaxRecvDataSegmentLength')) {
    out.push(['MaxRecvDataSegmentLength', String(cfg.maxRecvDataSegmentLength)]);
    state.declared.add('MaxRecvDataSegmentLength');
    state.targetMaxRecvDataSegmentLength = cfg.maxRecvDataSegmentLength;
  }
  if (cfg.targetAlias !== undefined && !state.declared.has('TargetAlias')) {
    out.push(['TargetAlias', cfg.targetAlias]);
    state.declared.add('TargetAlias');
  }
  return out;
}
