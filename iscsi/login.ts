/**
 * The login phase of one connection (RFC 7143 §6.3, §11.12, §11.13):
 * stages (security -> operational -> full feature), text continuation,
 * CHAP, operational key negotiation, TSIH assignment and session
 * reinstatement by ISID. Every failure ends with a Login Response whose
 * status class/detail says why, and the connection closes.
 */
import type { Logger } from 'pino';
import type { Pdu, SequenceNumbers } from './pdu';
import { FLAG_C, FLAG_T, LoginField, cmdSnOf, encodeLoginResponse, expStatSnOf, flagsOf, ittOf, snAdd } from './pdu';
import { TextAccumulator, encodeTextKeys, parseTextKeys, type TextPair } from './text';
import { DEFAULT_TARGET_KEY_CONFIG, type TargetKeyConfig } from './login-keys';
import { LOGIN_STATUS, type LoginStatus } from './login-status';
import { type NegotiationState, createNegotiationState, negotiateOperational } from './negotiation';
import { ChapAuthenticator, createChapAuthenticator } from './chap';
import type { ServerContext } from './server';
import { Session, type SessionConnection } from './session';
import { initiatorMaySee } from './discovery';
import { NEGOTIATED_KEYS, type ChapCredentials, type NegotiatedParams, type TargetEntry } from './types';
import type { ItNexus } from '../scsi/types';

type Status = LoginStatus;

const STAGE_SECURITY = 0;
const STAGE_OPERATIONAL = 1;
const STAGE_FULL_FEATURE = 3;

/** Snapshot of the negotiation result that the data path uses. */
function negotiatedParams(st: NegotiationState): NegotiatedParams {
  const out: Record<string, unknown> = {};
  for (const k of NEGOTIATED_KEYS) out[k] = st[k];
  return Object.freeze(out) as NegotiatedParams;
}

/** What a completed login hands its connection; from then on the connection's own state. */
export interface Established {
  readonly session: Session;
  readonly params: NegotiatedParams;
  readonly cid: number;
  /** StatSN of the connection's next status PDU (login responses took the ones before). */
  readonly statSN: number;
}

/** What login needs of its connection (it writes none of the connection's fields). */
export interface LoginPort extends SessionConnection {
  readonly log: Logger;
  send(header: Buffer, data?: Buffer): void;
  drop(why: string): void;
  /** After the final login response: the connection takes over the session and its keys. */
  enterFullFeature(established: Established): void;
}

export class LoginNegotiator {
  private first = true;
  private cid = 0;
  /** StatSN of the next login response: ExpStatSN of the first request, then counted here. */
  private statSN = 0;
  private isid = Buffer.alloc(6);
  private tsihRequested = 0;
  private initiatorName = '';
  private sessionType: 'Discovery' | 'Normal' = 'Normal';
  private target: TargetEntry | null = null;
  private firstCmdSN = 0;
  private stage = STAGE_SECURITY;
  private authenticated = false;
  private chapRequired: ChapCredentials | undefined;
  private chap: ChapAuthenticator | null = null;
  private readonly text = new TextAccumulator(64 * 1024);
  private readonly state: NegotiationState = createNegotiationState();
  private keyConfig: Readonly<TargetKeyConfig> = DEFAULT_TARGET_KEY_CONFIG;

  constructor(
    private readonly conn: LoginPort,
    private readonly ctx: ServerContext,
  ) {}

  async handle(pdu: Pdu): Promise<void> {
    const bhs = pdu.bhs;
    const flags = flagsOf(bhs);
    const transit = (flags & FLAG_T) !== 0;
    const cont = (flags & FLAG_C) !== 0;
    const csg = (flags >> 2) & 3;
    let nsg = flags & 3;
    const itt = ittOf(bhs);

    if (this.first) {
      this.first = false;
      bhs.copy(this.isid, 0, LoginField.ISID, LoginField.ISID + 6);
      this.tsihRequested = bhs.readUInt16BE(LoginField.TSIH);
      this.cid = bhs.readUInt16BE(LoginField.CID);
      this.firstCmdSN = cmdSnOf(bhs);
      this.statSN = expStatSnOf(bhs);
      this.stage = csg;
      const vmax = bhs[LoginField.VERSION_MAX];
      const vmin = bhs[LoginField.VERSION_MIN];
      // We speak version 0 only (RFC 7143 §11.12.4).
      if (vmin > 0 || vmax < vmin) return this.fail(itt, csg, LOGIN_STATUS.UNSUPPORTED_VERSION, 'unsupported version');
    } else if (!bhs.subarray(LoginField.ISID, LoginField.ISID + 6).equals(this.isid)) {
      return this.fail(itt, csg, LOGIN_STATUS.INITIATOR_ERROR, 'ISID changed during login');
    }
    if (csg === 2 || (transit && (nsg === 2 || nsg <= csg && !(csg === STAGE_FULL_FEATURE)))) {
      return this.fail(itt, csg, LOGIN_STATUS.INITIATOR_ERROR, `bad stage transition ${csg}->${nsg}`);
    }
    if (transit && cont) return this.fail(itt, csg, LOGIN_STATUS.INITIATOR_ERROR, 'T and C both set');
    if (csg !== this.stage) {
      if (csg === STAGE_OPERATIONAL && this.stage === STAGE_SECURITY && this.authenticated) this.stage = csg;
      else return this.fail(itt, csg, LOGIN_STATUS.INITIATOR_ERROR, `unexpected stage ${csg}`);
    }

    const acc = this.text.push(pdu.data, cont);
    if (acc.status === 'error') return this.fail(itt, csg, LOGIN_STATUS.INITIATOR_ERROR, acc.reason);
    if (acc.status === 'partial') {
      // Acknowledge a partial text with an empty response (RFC 7143 §6.3, C bit).
      return this.respond(itt, csg, false, 0, []);
    }
    const parsed = parseTextKeys(acc.data);
    if (!parsed.ok) return this.fail(itt, csg, LOGIN_STATUS.INITIATOR_ERROR, parsed.reason);
    const keys = parsed.pairs;

    if (!this.initiatorName) {
      // The target decides the portal group tag we must announce in the first response.
      const tn = keys.find(([k]) => k === 'TargetName')?.[1];
      const t = tn === undefined ? undefined : this.ctx.findTarget(tn);
      if (t) this.keyConfig = { ...DEFAULT_TARGET_KEY_CONFIG, targetPortalGroupTag: t.portalGroupTag };
    }
    const answers: TextPair[] = [];
    const negotiated = negotiateOperational(keys, this.state, {
      targetLimits: this.keyConfig,
      isLeading: true,
      stage: csg === STAGE_SECURITY ? 'security' : 'operational',
      targetExists: (name) => this.ctx.findTarget(name) !== undefined,
    });
    if (negotiated.error) {
      const e = negotiated.error;
      return this.fail(itt, csg, e, e.reason);
    }
    if (!this.initiatorName) {
      const err = this.identify();
      if (err) return this.fail(itt, csg, err[0], err[1]);
    }

    if (csg === STAGE_SECURITY) {
      const r = this.security(keys, answers);
      if (r === 'fail') {
        await delay(this.ctx.limits.authFailureDelayMs);
        return this.fail(itt, csg, LOGIN_STATUS.AUTHENTICATION_FAILURE, 'authentication failed');
      }
      if (r === 'initiator-error') return this.fail(itt, csg, LOGIN_STATUS.INITIATOR_ERROR, 'bad security keys');
      if (!this.authenticated) nsg = csg; // cannot leave the security stage yet
    } else if (this.chapRequired && !this.authenticated) {
      await delay(this.ctx.limits.authFailureDelayMs);
      return this.fail(itt, csg, LOGIN_STATUS.AUTHENTICATION_FAILURE, 'authentication required');
    } else {
      this.authenticated = true;
    }
    answers.push(...negotiated.response);

    const canTransit = transit && (csg !== STAGE_SECURITY || this.authenticated);
    if (canTransit && nsg === STAGE_FULL_FEATURE) {
      return this.complete(itt, csg, answers);
    }
    if (canTransit) this.stage = nsg;
    return this.respond(itt, csg, canTransit, canTransit ? nsg : 0, answers);
  }

  /** After the first request was negotiated: target, access, CHAP policy, session limits. */
  private identify(): [Status, string] | null {
    const st = this.state;
    this.initiatorName = st.initiatorName!;
    this.sessionType = st.sessionType ?? 'Normal';
    this.conn.log.info({ initiator: this.initiatorName, sessionType: this.sessionType }, 'login');
    if (this.sessionType === 'Normal') {
      const t = this.ctx.findTarget(st.targetName!);
      if (!t) return [LOGIN_STATUS.TARGET_NOT_FOUND, `no target ${st.targetName}`];
      if (!initiatorMaySee(t, this.initiatorName)) return [LOGIN_STATUS.AUTHORIZATION_FAILURE, 'initiator not allowed'];
      this.target = t;
      this.chapRequired = t.acl ? t.acl.chapFor(this.initiatorName) : t.chap;
    } else {
      this.chapRequired = this.ctx.discoveryChap;
    }
    if (this.tsihRequested !== 0) {
      // Adding a connection to an existing session: MaxConnections is 1 (RFC 7143 §6.3.1).
      if (!this.ctx.registry.get(this.tsihRequested)) return [LOGIN_STATUS.SESSION_DOES_NOT_EXIST, 'no such TSIH'];
      return [LOGIN_STATUS.TOO_MANY_CONNECTIONS, 'one connection per session'];
    }
    // A login that reinstates a session (same initiator, ISID and target, RFC 7143 §6.3.5) replaces
    // it: it does not count against the caps, or an initiator at its cap could never recover a
    // session whose connection died.
    const replaces = this.ctx.registry.findForReinstatement(this.initiatorName, this.isid, this.target?.name ?? null) ? 1 : 0;
    if (this.ctx.registry.size - replaces >= this.ctx.limits.maxSessions ||
        this.ctx.registry.countFor(this.initiatorName) - replaces >= this.ctx.limits.maxSessionsPerInitiator) {
      return [LOGIN_STATUS.OUT_OF_RESOURCES, 'session limit reached'];
    }
    return null;
  }

  /** SecurityNegotiation: AuthMethod and CHAP, answered by the authenticator (chap.ts). */
  private security(keys: TextPair[], answers: TextPair[]): 'ok' | 'fail' | 'initiator-error' {
    if (!this.chap) {
      const creds = this.chapRequired;
      this.chap = createChapAuthenticator({
        users: creds ? (name: string) => (name === creds.user ? creds.secret : undefined) : undefined,
        mutual: creds?.mutual ? { name: creds.mutual.user, secret: creds.mutual.secret } : undefined,
      });
    }
    const step = this.chap.step(keys);
    if (step.status === 'failed') {
      this.conn.log.warn({ reason: step.reason }, 'authentication failed');
      return step.error.statusDetail === 0 ? 'initiator-error' : 'fail';
    }
    answers.push(...step.response);
    if (step.status === 'authenticated') this.authenticated = true;
    return 'ok';
  }

  private async complete(itt: number, csg: number, answers: TextPair[]): Promise<void> {
    const ctx = this.ctx;
    const registry = ctx.registry;
    // Session reinstatement: a new login (TSIH 0) with the same ISID, initiator and target
    // replaces the old session (RFC 7143 §6.3.5).
    const old = registry.findForReinstatement(this.initiatorName, this.isid, this.target?.name ?? null);
    if (old) {
      this.conn.log.info({ tsih: old.tsih }, 'reinstating session');
      await Promise.all([...old.connections].map((c) => c.shutdown('session reinstatement')));
      if (!old.closed) ctx.endSession(old);
    }
    const params = negotiatedParams(this.state);
    const tsih = registry.allocateTsih();
    let nexus: ItNexus | null = null;
    if (this.target) {
      const isidHex = this.isid.toString('hex');
      const initiatorPortName = `${this.initiatorName},i,0x${isidHex}`;
      nexus = {
        key: `${initiatorPortName}|${this.target.name}`,
        initiatorName: this.initiatorName,
        initiatorPortName,
        relativeTargetPort: this.target.relativeTargetPort ?? 1,
        targetPortName: `${this.target.name},t,0x${this.target.portalGroupTag.toString(16).padStart(4, '0')}`,
      };
    }
    const session = new Session(
      tsih,
      Buffer.from(this.isid),
      this.initiatorName,
      this.sessionType,
      this.target,
      nexus,
      params,
      this.firstCmdSN,
      ctx.limits.queueDepth,
      this.conn.log.child({ tsih }),
    );
    registry.add(session);
    ctx.sessionEstablished(session, this.conn);
    if (nexus && this.target) this.target.device.attachNexus(nexus);
    const data = encodeTextKeys(answers);
    const h = encodeLoginResponse(
      {
        transit: true,
        cont: false,
        csg,
        nsg: STAGE_FULL_FEATURE,
        versionMax: 0,
        versionActive: 0,
        isid: this.isid,
        tsih,
        itt,
        statusClass: 0,
        statusDetail: 0,
        dataLength: data.length,
      },
      this.nextSn(session.expCmdSN, session.maxCmdSN),
    );
    this.conn.send(h, data);
    // Digests and the negotiated data segment limit apply from the next PDU on.
    this.conn.enterFullFeature({ session, params, cid: this.cid, statSN: this.statSN });
  }

  private respond(itt: number, csg: number, transit: boolean, nsg: number, answers: TextPair[]): void {
    const data = encodeTextKeys(answers);
    const sn = this.nextSn(this.firstCmdSN, snAdd(this.firstCmdSN, this.ctx.limits.queueDepth - 1));
    const h = encodeLoginResponse(
      {
        transit,
        cont: false,
        csg,
        nsg,
        versionMax: 0,
        versionActive: 0,
        isid: this.isid,
        tsih: 0,
        itt,
        statusClass: 0,
        statusDetail: 0,
        dataLength: data.length,
      },
      sn,
    );
    this.conn.send(h, data);
  }

  /** Sequence numbers of a login response: StatSN advances. */
  private nextSn(expCmdSN: number, maxCmdSN: number): SequenceNumbers {
    const statSN = this.statSN;
    this.statSN = snAdd(statSN, 1);
    return { statSN, expCmdSN, maxCmdSN };
  }

  private fail(itt: number, csg: number, status: Status, why: string): void {
    this.conn.log.warn({ statusClass: status.statusClass, statusDetail: status.statusDetail, why }, 'login rejected');
    this.ctx.loginFailed?.(status.statusClass, status.statusDetail);
    const sn = this.nextSn(this.firstCmdSN, this.firstCmdSN);
    const h = encodeLoginResponse(
      {
        transit: false,
        cont: false,
        csg,
        nsg: 0,
        versionMax: 0,
        versionActive: 0,
        isid: this.isid,
        tsih: 0,
        itt,
        statusClass: status.statusClass,
        statusDetail: status.statusDetail,
        dataLength: 0,
      },
      sn,
    );
    this.conn.send(h);
    this.conn.drop(`login failed: ${why}`);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
