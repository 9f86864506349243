/**
 * CHAP authentication, target side (RFC 7143 §12.1.3, RFC 1994).
 *
 *   I->T  AuthMethod=CHAP,None            T->I  AuthMethod=CHAP
 *   I->T  CHAP_A=<A1,A2,...>              T->I  CHAP_A=<A> CHAP_I=<I> CHAP_C=<C>
 *   I->T  CHAP_N=<N> CHAP_R=<R>           (one-way: done)
 *         [+ CHAP_I=<I'> CHAP_C=<C'>]     T->I  CHAP_N=<N'> CHAP_R=<R'>  (mutual)
 *
 * R = H(I as one octet || secret || C). Every failure is Login status 0201h
 * (authentication failure) except a malformed AuthMethod (0200h).
 *
 * Secrets never leave this module: they are not stored on the returned
 * object, never appear in failure reasons, and toJSON() shows only the phase
 * and the authenticated user name.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isSecurityKey } from './login-keys';
import { LOGIN_STATUS, type LoginError, type LoginStatus } from './login-status';
import { encodeHexValue, parseBinaryValue, parseBoundedNumber, parseListValue, type TextPair } from './text';

/** CHAP_A values (IANA PPP CHAP algorithms). RFC 7143 requires MD5 (5). */
export const CHAP_ALGORITHMS = {
  5: { hash: 'md5', digestLength: 16 },
  6: { hash: 'sha1', digestLength: 20 },
  7: { hash: 'sha256', digestLength: 32 },
  8: { hash: 'sha3-256', digestLength: 32 },
} as const;
export type ChapAlgorithm = keyof typeof CHAP_ALGORITHMS;

export const DEFAULT_CHAP_ALGORITHMS: readonly ChapAlgorithm[] = [5, 7];

/** RFC 7143 §12.1.3: challenge and response binary length at most 1024 bytes. */
export const MAX_CHAP_BINARY_LENGTH = 1024;
export const DEFAULT_CHALLENGE_LENGTH = 16;

/** Microsoft's initiator accepts 12..16 character secrets only. */
export const CHAP_SECRET_MIN_LENGTH = 12;
export const CHAP_SECRET_MAX_LENGTH = 16;

export interface ChapAuthenticatorOptions {
  /**
   * Secret for an initiator's CHAP_N, or undefined for an unknown name.
   * Omit to configure no authentication (AuthMethod=None only).
   */
  users?: (name: string) => string | undefined;
  /** Target credentials for mutual CHAP; without them mutual CHAP is refused. */
  mutual?: { name: string; secret: string };
  /** Random source; defaults to crypto.randomBytes. */
  random?: (size: number) => Buffer;
  /** Algorithms accepted, default MD5 and SHA-256; the initiator's order decides. */
  algorithms?: readonly ChapAlgorithm[];
  /** Challenge length in bytes, 16..1024. */
  challengeLength?: number;
}

export type ChapPhase = 'start' | 'algorithm' | 'response' | 'done' | 'failed';

export type ChapStep =
  /** Send `response` and stay in SecurityNegotiation. */
  | { status: 'continue'; response: TextPair[] }
  /** Send `response`; authentication is complete (CHAP verified, or None agreed) and the stage may advance. */
  | { status: 'authenticated'; response: TextPair[]; method: 'None' | 'CHAP'; user?: string; mutual: boolean }
  /** Reject the login with `error` and close the connection. `reason` repeats error.reason for logs. */
  | { status: 'failed'; error: LoginError; reason: string };

export interface ChapAuthenticator {
  readonly phase: ChapPhase;
  /** true when CHAP is configured: a login that skips SecurityNegotiation must get 0201h. */
  readonly required: boolean;
  readonly authenticated: boolean;
  /** The initiator's CHAP_N once authenticated. */
  readonly user: string | undefined;
  /**
   * Feed one Login Request's pairs (non-security keys are ignored, so the
   * whole request may be passed).
   */
  step(request: ReadonlyArray<readonly [string, string]>): ChapStep;
  toJSON(): { phase: ChapPhase; user: string | undefined };
}

/** H(id || secret || challenge) as in RFC 1994 §4.1. */
export function chapResponse(algorithm: ChapAlgorithm, id: number, secret: string | Uint8Array, challenge: Uint8Array): Buffer {
  return createHash(CHAP_ALGORITHMS[algorithm].hash)
    .update(Uint8Array.of(id & 0xff))
    .update(typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret)
    .update(challenge)
    .digest();
}

function isChapAlgorithm(n: number): n is ChapAlgorithm {
  return Object.prototype.hasOwnProperty.call(CHAP_ALGORITHMS, n);
}

export function createChapAuthenticator(options: ChapAuthenticatorOptions): ChapAuthenticator {
  const users = options.users;
  const mutualCreds = options.mutual;
  const random = options.random ?? randomBytes;
  const accepted = new Set<ChapAlgorithm>(options.algorithms ?? DEFAULT_CHAP_ALGORITHMS);
  const challengeLength = options.challengeLength ?? DEFAULT_CHALLENGE_LENGTH;
  if (!Number.isInteger(challengeLength) || challengeLength < 16 || challengeLength > MAX_CHAP_BINARY_LENGTH) {
    throw new RangeError(`CHAP challenge length must be 16..${MAX_CHAP_BINARY_LENGTH}`);
  }
  for (const a of accepted) if (!isChapAlgorithm(a)) throw new RangeError(`unknown CHAP algorithm ${a}`);

  let phase: ChapPhase = 'start';
  let user: string | undefined;
  let algorithm: ChapAlgorithm = 5;
  let id = 0;
  let challenge: Buffer = Buffer.alloc(0);

  const failWith = (status: LoginStatus, reason: string): ChapStep => {
    phase = 'failed';
    challenge = Buffer.alloc(0);
    return { status: 'failed', error: { statusClass: status.statusClass, statusDetail: status.statusDetail, reason }, reason };
  };
  const authFail = (reason: string) => failWith(LOGIN_STATUS.AUTHENTICATION_FAILURE, reason);

  function chooseMethod(keys: Map<string, string>, response: TextPair[]): ChapStep | undefined {
    const offer = keys.get('AuthMethod');
    if (offer === undefined) {
      // A caller that answered AuthMethod=CHAP itself may start us at CHAP_A.
      if (users && keys.has('CHAP_A')) {
        phase = 'algorithm';
        return undefined;
      }
      if (users) return authFail('AuthMethod not offered but CHAP is required');
      phase = 'done';
      return { status: 'authenticated', response, method: 'None', mutual: false };
    }
    const methods = parseListValue(offer);
    if (!methods) return failWith(LOGIN_STATUS.INITIATOR_ERROR, 'malformed AuthMethod');
    if (users) {
      if (!methods.includes('CHAP')) return authFail(`CHAP required, initiator offered ${offer}`);
      response.push(['AuthMethod', 'CHAP']);
      phase = 'algorithm';
      return undefined; // CHAP_A may ride in the same request
    }
    if (!methods.includes('None')) return authFail(`no authentication configured, initiator offered ${offer}`);
    response.push(['AuthMethod', 'None']);
    phase = 'done';
    return { status: 'authenticated', response, method: 'None', mutual: false };
  }

  function sendChallenge(keys: Map<string, string>, response: TextPair[]): ChapStep {
    const offer = keys.get('CHAP_A');
    if (offer === undefined) return authFail('expected CHAP_A');
    const list = parseListValue(offer);
    if (!list) return authFail('malformed CHAP_A');
    let pick: ChapAlgorithm | undefined;
    for (const v of list) {
      const n = parseBoundedNumber(v, 0, 255);
      if (n.ok && isChapAlgorithm(n.value) && accepted.has(n.value)) {
        pick = n.value;
        break;
      }
    }
    if (pick === undefined) return authFail(`no supported CHAP_A in ${offer}`);
    algorithm = pick;
    id = random(1)[0]!;
    challenge = Buffer.from(random(challengeLength));
    response.push(['CHAP_A', String(algorithm)], ['CHAP_I', String(id)], ['CHAP_C', encodeHexValue(challenge)]);
    phase = 'response';
    return { status: 'continue', response };
  }

  function verify(keys: Map<string, string>): ChapStep {
    const name = keys.get('CHAP_N');
    const r = keys.get('CHAP_R');
    if (name === undefined || r === undefined) return authFail('expected CHAP_N and CHAP_R');
    const digestLength = CHAP_ALGORITHMS[algorithm].digestLength;
    const received = parseBinaryValue(r);
    if (!received || received.length !== digestLength) return authFail('malformed CHAP_R');

    // Mutual CHAP request: validate its form before spending a hash on it.
    const mi = keys.get('CHAP_I');
    const mc = keys.get('CHAP_C');
    let mutualReq: { id: number; challenge: Buffer } | undefined;
    if (mi !== undefined || mc !== undefined) {
      if (mi === undefined || mc === undefined) return authFail('mutual CHAP needs both CHAP_I and CHAP_C');
      if (!mutualCreds) return authFail('mutual CHAP requested but not configured');
      const i = parseBoundedNumber(mi, 0, 255);
      const c = parseBinaryValue(mc);
      if (!i.ok || !c || c.length === 0 || c.length > MAX_CHAP_BINARY_LENGTH) return authFail('malformed mutual CHAP_I/CHAP_C');
      // RFC 7143 §12.1.3: a challenge reflected back at us is an attack.
      if (c.length === challenge.length && timingSafeEqual(c, challenge)) return authFail('CHAP challenge reflected');
      mutualReq = { id: i.value, challenge: c };
    }

    const secret = users!(name);
    if (secret === undefined) {
      chapResponse(algorithm, id, random(CHAP_SECRET_MAX_LENGTH), challenge); // same work as a known user
      return authFail(`unknown CHAP user ${JSON.stringify(name)}`);
    }
    // The same secret in both directions lets one side's answers authenticate the other.
    if (mutualCreds && secret === mutualCreds.secret) return authFail('initiator and target CHAP secrets are identical');
    const expected = chapResponse(algorithm, id, secret, challenge);
    if (!timingSafeEqual(expected, received)) return authFail(`wrong CHAP response for user ${JSON.stringify(name)}`);

    user = name;
    phase = 'done';
    challenge = Buffer.alloc(0);
    const response: TextPair[] = [];
    if (mutualReq) {
      const ours = chapResponse(algorithm, mutualReq.id, mutualCreds!.secret, mutualReq.challenge);
      response.push(['CHAP_N', mutualCreds!.name], ['CHAP_R', encodeHexValue(ours)]);
    }
    return { status: 'authenticated', response, method: 'CHAP', user: name, mutual: mutualReq !== undefined };
  }

  return {
    get phase() {
      return phase;
    },
    required: users !== undefined,
    get authenticated() {
      return phase === 'done';
    },
    get user() {
      return user;
    },
    step(request) {
      const keys = new Map<string, string>();
      for (const [k, v] of request) {
        if (!isSecurityKey(k)) continue;
        if (keys.has(k)) return failWith(LOGIN_STATUS.INITIATOR_ERROR, `${k} sent twice`);
        keys.set(k, v);
      }
      switch (phase) {
        case 'start': {
          const response: TextPair[] = [];
          const r = chooseMethod(keys, response);
          if (r) return r;
          if (keys.has('CHAP_A')) return sendChallenge(keys, response);
          return { status: 'continue', response };
        }
        case 'algorithm':
          if (keys.has('AuthMethod')) return failWith(LOGIN_STATUS.INITIATOR_ERROR, 'AuthMethod sent twice');
          return sendChallenge(keys, []);
        case 'response':
          if (keys.has('AuthMethod') || keys.has('CHAP_A')) return authFail('unexpected key during CHAP response');
          return verify(keys);
        case 'done':
          if (keys.size > 0) return failWith(LOGIN_STATUS.INITIATOR_ERROR, 'security keys after authentication');
          return user === undefined
            ? { status: 'authenticated', response: [], method: 'None', mutual: false }
            : { status: 'authenticated', response: [], method: 'CHAP', user, mutual: false };
        case 'failed':
          return authFail('authentication already failed');
      }
    },
    toJSON() {
      return { phase, user };
    },
  };
}
