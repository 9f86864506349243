/**
 * The target side of login/text key negotiation (RFC 7143 §6.2, §13): the
 * per-connection NegotiationState, and negotiateOperational, which walks an
 * initiator request through KEY_TABLE (login-keys.ts) and produces the
 * target's answers.
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
import { LOGIN_STATUS, loginError, type LoginError, type LoginStatus } from './login-status';
import {
  KEY_TABLE,
  isSecurityKey,
  type BooleanKeyDef,
  type DeclarativeKeyDef,
  type DigestPolicy,
  type ListKeyDef,
  type NumericKeyDef,
  type SessionType,
  type TargetKeyConfig,
} from './login-keys';

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
