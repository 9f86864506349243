import { createHash } from 'node:crypto';
import {
  chapResponse,
  createChapAuthenticator,
  type ChapAuthenticator,
  type ChapAuthenticatorOptions,
  type ChapStep,
} from '../../iscsi/chap';
import { chapSecretProblem } from '../../src/config';
import { LOGIN_STATUS, type LoginStatus } from '../../iscsi/login-status';
import { parseBinaryValue } from '../../iscsi/text';

const USER = 'iqn.2004-10.com.ubuntu:01:e5b1b4d3a3';
const SECRET = 'iscsi-secret-1'; // 14 characters
const TARGET_USER = 'iqn.2024-01.org.example:disk1';
const TARGET_SECRET = 'target-secret-2';
const CHALLENGE = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
const ID = 0x2a;

/** Deterministic random source: first call gives the CHAP_I byte, second the challenge. */
function fixedRandom(): (n: number) => Buffer {
  const queue = [Buffer.of(ID), CHALLENGE];
  return (n) => {
    const next = queue.shift();
    if (next && next.length === n) return Buffer.from(next);
    return Buffer.alloc(n, 0x5a);
  };
}

/** RFC 1994 §4.1 computed independently of the module: H(id || secret || challenge). */
function rfcResponse(hash: string, id: number, secret: string, challenge: Buffer): Buffer {
  return createHash(hash).update(Buffer.concat([Buffer.of(id), Buffer.from(secret), challenge])).digest();
}

function make(opts: Partial<ChapAuthenticatorOptions> = {}): ChapAuthenticator {
  return createChapAuthenticator({
    users: (name) => (name === USER ? SECRET : undefined),
    random: fixedRandom(),
    ...opts,
  });
}

const hex = (b: Buffer) => `0x${b.toString('hex')}`;

function expectFailed(step: ChapStep, status: LoginStatus = LOGIN_STATUS.AUTHENTICATION_FAILURE): string {
  expect(step.status).toBe('failed');
  if (step.status !== 'failed') throw new Error('not failed');
  expect(step.error).toMatchObject(status);
  return step.error.reason;
}

/** Run AuthMethod and CHAP_A; returns the challenge step. */
function toChallenge(auth: ChapAuthenticator, chapA = '5') {
  const s1 = auth.step([['InitiatorName', USER], ['AuthMethod', 'CHAP,None']]);
  expect(s1).toEqual({ status: 'continue', response: [['AuthMethod', 'CHAP']] });
  return auth.step([['CHAP_A', chapA]]);
}

describe('CHAP golden vectors', () => {
  it('MD5 of id || secret || challenge', () => {
    expect(chapResponse(5, ID, SECRET, CHALLENGE).toString('hex')).toBe('87d6c675fe7430a9492e316e718f5e7d');
    expect(chapResponse(5, 1, 'abc', Buffer.from('xyz')).toString('hex')).toBe('03d42223812429705f28e4fc984933b2');
  });

  it('SHA-256 of id || secret || challenge', () => {
    expect(chapResponse(7, ID, SECRET, CHALLENGE).toString('hex')).toBe(
      '4caa247b01f10d7664a13144bd51d7cc9b2b1c229942f8255e23621b48c27a22',
    );
  });
});

describe('one-way CHAP', () => {
  it('runs the whole exchange with MD5', () => {
    const auth = make();
    expect(auth.required).toBe(true);
    const s2 = toChallenge(auth);
    expect(s2).toEqual({
      status: 'continue',
      response: [
        ['CHAP_A', '5'],
        ['CHAP_I', '42'],
        ['CHAP_C', '0x000102030405060708090a0b0c0d0e0f'],
      ],
    });
    expect(auth.phase).toBe('response');
    const r = rfcResponse('md5', ID, SECRET, CHALLENGE);
    const s3 = auth.step([['CHAP_N', USER], ['CHAP_R', hex(r)]]);
    expect(s3).toEqual({ status: 'authenticated', response: [], method: 'CHAP', user: USER, mutual: false });
    expect(auth.authenticated).toBe(true);
    expect(auth.user).toBe(USER);
  });

  it('accepts the response in base64 and upper-case hex', () => {
    for (const form of [
      (b: Buffer) => `0b${b.toString('base64')}`,
      (b: Buffer) => `0X${b.toString('hex').toUpperCase()}`,
    ]) {
      const auth = make();
      toChallenge(auth);
      const s = auth.step([['CHAP_N', USER], ['CHAP_R', form(rfcResponse('md5', ID, SECRET, CHALLENGE))]]);
      expect(s.status).toBe('authenticated');
    }
  });

  it('takes CHAP_A in the same request as AuthMethod', () => {
    const auth = make();
    const s = auth.step([['AuthMethod', 'CHAP'], ['CHAP_A', '5']]);
    expect(s.status).toBe('continue');
    if (s.status === 'continue') expect(s.response.map(([k]) => k)).toEqual(['AuthMethod', 'CHAP_A', 'CHAP_I', 'CHAP_C']);
  });

  it('picks the first algorithm of the initiator that we accept', () => {
    expect(toChallenge(make(), '8,7,6,5')).toMatchObject({ response: expect.arrayContaining([['CHAP_A', '7']]) });
    expect(toChallenge(make({ algorithms: [5] }), '7,5')).toMatchObject({ response: expect.arrayContaining([['CHAP_A', '5']]) });
    expect(toChallenge(make({ algorithms: [5, 6, 7, 8] }), '8,5')).toMatchObject({
      response: expect.arrayContaining([['CHAP_A', '8']]),
    });
  });

  it('works with SHA-256', () => {
    const auth = make();
    toChallenge(auth, '7');
    const s = auth.step([['CHAP_N', USER], ['CHAP_R', hex(rfcResponse('sha256', ID, SECRET, CHALLENGE))]]);
    expect(s.status).toBe('authenticated');
  });

  it('uses 16 random bytes and a random id by default', () => {
    const auth = createChapAuthenticator({ users: () => SECRET });
    const s = toChallenge(auth);
    if (s.status !== 'continue') throw new Error('expected continue');
    const m = new Map(s.response);
    expect(parseBinaryValue(m.get('CHAP_C')!)!.length).toBe(16);
    const i = Number(m.get('CHAP_I'));
    expect(i).toBeGreaterThanOrEqual(0);
    expect(i).toBeLessThanOrEqual(255);
  });

  it.each([
    ['wrong response', (r: Buffer) => { r[0] ^= 1; return hex(r); }],
    ['short response', (r: Buffer) => hex(r.subarray(0, 15))],
    ['long response', (r: Buffer) => hex(Buffer.concat([r, Buffer.of(0)]))],
    ['garbage response', () => 'not-binary'],
    ['decimal response', () => '12345'],
  ])('fails on a %s', (_n, mutate) => {
    const auth = make();
    toChallenge(auth);
    const r = rfcResponse('md5', ID, SECRET, CHALLENGE);
    expectFailed(auth.step([['CHAP_N', USER], ['CHAP_R', mutate(r)]]));
    expect(auth.phase).toBe('failed');
    expect(auth.authenticated).toBe(false);
  });

  it('fails for an unknown user even with a response that would match', () => {
    const auth = make();
    toChallenge(auth);
    const reason = expectFailed(auth.step([['CHAP_N', 'iqn.2024-01.org.evil:x'], ['CHAP_R', hex(rfcResponse('md5', ID, SECRET, CHALLENGE))]]));
    expect(reason).toMatch(/unknown/);
  });

  it('treats CHAP_N as text, not as an encoded value', () => {
    const name = '0x41';
    const auth = make({ users: (n) => (n === name ? SECRET : undefined) });
    toChallenge(auth);
    expect(auth.step([['CHAP_N', name], ['CHAP_R', hex(rfcResponse('md5', ID, SECRET, CHALLENGE))]]).status).toBe('authenticated');
  });

  it('fails when CHAP_N or CHAP_R is missing', () => {
    const a = make();
    toChallenge(a);
    expectFailed(a.step([['CHAP_N', USER]]));
    const b = make();
    toChallenge(b);
    expectFailed(b.step([['CHAP_R', hex(rfcResponse('md5', ID, SECRET, CHALLENGE))]]));
  });

  it('stays failed', () => {
    const auth = make();
    toChallenge(auth);
    expectFailed(auth.step([['CHAP_N', USER], ['CHAP_R', '0x00']]));
    expectFailed(auth.step([['CHAP_N', USER], ['CHAP_R', hex(rfcResponse('md5', ID, SECRET, CHALLENGE))]]));
  });

  it('ignores non-security keys in the request', () => {
    const auth = make();
    const s = auth.step([['InitiatorName', USER], ['SessionType', 'Normal'], ['TargetName', 'x'], ['AuthMethod', 'None,CHAP']]);
    expect(s).toEqual({ status: 'continue', response: [['AuthMethod', 'CHAP']] });
  });

  it('an empty request after completion is fine; more security keys are not', () => {
    const auth = make();
    toChallenge(auth);
    auth.step([['CHAP_N', USER], ['CHAP_R', hex(rfcResponse('md5', ID, SECRET, CHALLENGE))]]);
    expect(auth.step([])).toMatchObject({ status: 'authenticated', method: 'CHAP', user: USER });
    expectFailed(auth.step([['CHAP_A', '5']]), LOGIN_STATUS.INITIATOR_ERROR);
  });
});

describe('method negotiation', () => {
  it.each([
    ['None', 'CHAP required'],
    ['SRP,KRB5', 'CHAP required'],
  ])('CHAP configured, initiator offers %s -> 0201h', (offer, reason) => {
    expect(expectFailed(make().step([['AuthMethod', offer]]))).toMatch(reason);
  });

  it('starts at CHAP_A when the caller has answered AuthMethod=CHAP itself', () => {
    const auth = make();
    const s = auth.step([['CHAP_A', '5']]);
    expect(s).toMatchObject({ status: 'continue', response: [['CHAP_A', '5'], ['CHAP_I', '42'], ['CHAP_C', hex(CHALLENGE)]] });
    const done = auth.step([['CHAP_N', USER], ['CHAP_R', hex(rfcResponse('md5', ID, SECRET, CHALLENGE))]]);
    expect(done).toMatchObject({ status: 'authenticated', method: 'CHAP', user: USER });
  });

  it('failed steps carry the reason at top level too', () => {
    const s = make().step([['AuthMethod', 'None']]);
    expect(s.status === 'failed' && s.reason === s.error.reason).toBe(true);
  });

  it('CHAP configured and no AuthMethod offered -> 0201h', () => {
    expectFailed(make().step([['InitiatorName', USER]]));
  });

  it('malformed AuthMethod -> 0200h', () => {
    expectFailed(make().step([['AuthMethod', 'CHAP,,None']]), LOGIN_STATUS.INITIATOR_ERROR);
  });

  it('no authentication configured: None when offered', () => {
    const auth = createChapAuthenticator({});
    expect(auth.required).toBe(false);
    expect(auth.step([['AuthMethod', 'CHAP,None']])).toEqual({
      status: 'authenticated',
      response: [['AuthMethod', 'None']],
      method: 'None',
      mutual: false,
    });
    expect(auth.authenticated).toBe(true);
    expect(auth.user).toBeUndefined();
  });

  it('no authentication configured: nothing offered is fine', () => {
    expect(createChapAuthenticator({}).step([])).toMatchObject({ status: 'authenticated', method: 'None', response: [] });
  });

  it('no authentication configured, only CHAP offered -> 0201h', () => {
    expectFailed(createChapAuthenticator({}).step([['AuthMethod', 'CHAP']]));
  });

  it.each(['', '99', '5,,7', 'MD5', '6'])('CHAP_A=%j -> 0201h', (offer) => {
    expectFailed(toChallenge(make(), offer));
  });

  it('missing CHAP_A -> 0201h', () => {
    const auth = make();
    auth.step([['AuthMethod', 'CHAP']]);
    expectFailed(auth.step([]));
  });

  it('AuthMethod again -> 0200h', () => {
    const auth = make();
    auth.step([['AuthMethod', 'CHAP']]);
    expectFailed(auth.step([['AuthMethod', 'CHAP']]), LOGIN_STATUS.INITIATOR_ERROR);
  });

  it('rejects bad challenge lengths and algorithms at construction', () => {
    expect(() => createChapAuthenticator({ users: () => SECRET, challengeLength: 15 })).toThrow(RangeError);
    expect(() => createChapAuthenticator({ users: () => SECRET, challengeLength: 1025 })).toThrow(RangeError);
    expect(() => createChapAuthenticator({ users: () => SECRET, algorithms: [9 as 5] })).toThrow(RangeError);
  });
});

describe('mutual CHAP', () => {
  const MUTUAL_ID = 7;
  const MUTUAL_CHALLENGE = Buffer.from('f0e1d2c3b4a5968778695a4b3c2d1e0f', 'hex');

  function mutualStep(auth: ChapAuthenticator, extra: Array<[string, string]>) {
    toChallenge(auth);
    return auth.step([['CHAP_N', USER], ['CHAP_R', hex(rfcResponse('md5', ID, SECRET, CHALLENGE))], ...extra]);
  }

  it('answers with the target name and H(I\' || target secret || C\')', () => {
    const auth = make({ mutual: { name: TARGET_USER, secret: TARGET_SECRET } });
    const s = mutualStep(auth, [['CHAP_I', String(MUTUAL_ID)], ['CHAP_C', hex(MUTUAL_CHALLENGE)]]);
    expect(s).toEqual({
      status: 'authenticated',
      method: 'CHAP',
      user: USER,
      mutual: true,
      response: [
        ['CHAP_N', TARGET_USER],
        ['CHAP_R', hex(rfcResponse('md5', MUTUAL_ID, TARGET_SECRET, MUTUAL_CHALLENGE))],
      ],
    });
  });

  it('accepts a hex CHAP_I and a base64 CHAP_C', () => {
    const auth = make({ mutual: { name: TARGET_USER, secret: TARGET_SECRET } });
    const s = mutualStep(auth, [['CHAP_I', '0x07'], ['CHAP_C', `0b${MUTUAL_CHALLENGE.toString('base64')}`]]);
    expect(s.status).toBe('authenticated');
  });

  it('one-way login still works when mutual credentials are configured', () => {
    const auth = make({ mutual: { name: TARGET_USER, secret: TARGET_SECRET } });
    expect(mutualStep(auth, [])).toMatchObject({ status: 'authenticated', mutual: false, response: [] });
  });

  it('mutual requested but not configured -> 0201h', () => {
    expectFailed(mutualStep(make(), [['CHAP_I', '7'], ['CHAP_C', hex(MUTUAL_CHALLENGE)]]));
  });

  it('reflection of our own challenge -> 0201h', () => {
    const auth = make({ mutual: { name: TARGET_USER, secret: TARGET_SECRET } });
    const reason = expectFailed(mutualStep(auth, [['CHAP_I', String(ID)], ['CHAP_C', hex(CHALLENGE)]]));
    expect(reason).toMatch(/reflected/);
  });

  it.each([
    ['only CHAP_I', [['CHAP_I', '7']]],
    ['only CHAP_C', [['CHAP_C', '0x0102']]],
    ['CHAP_I out of range', [['CHAP_I', '256'], ['CHAP_C', '0x0102']]],
    ['CHAP_C not binary', [['CHAP_C', 'abc'], ['CHAP_I', '1']]],
    ['CHAP_C too long', [['CHAP_C', `0x${'00'.repeat(1025)}`], ['CHAP_I', '1']]],
  ] as Array<[string, Array<[string, string]>]>)('%s -> 0201h', (_n, extra) => {
    expectFailed(mutualStep(make({ mutual: { name: TARGET_USER, secret: TARGET_SECRET } }), extra));
  });

  it('does not answer the mutual challenge when the initiator failed', () => {
    const auth = make({ mutual: { name: TARGET_USER, secret: TARGET_SECRET } });
    toChallenge(auth);
    const s = auth.step([['CHAP_N', USER], ['CHAP_R', '0x' + '00'.repeat(16)], ['CHAP_I', '7'], ['CHAP_C', hex(MUTUAL_CHALLENGE)]]);
    expectFailed(s);
  });

  it('refuses a user whose secret equals the target secret', () => {
    const auth = make({ mutual: { name: TARGET_USER, secret: SECRET } });
    toChallenge(auth);
    const s = auth.step([['CHAP_N', USER], ['CHAP_R', hex(rfcResponse('md5', ID, SECRET, CHALLENGE))]]);
    expect(expectFailed(s)).toMatch(/identical/);
  });
});

describe('secrets stay secret', () => {
  it('never appear in failure reasons or toJSON', () => {
    const auth = make({ mutual: { name: TARGET_USER, secret: TARGET_SECRET } });
    toChallenge(auth);
    const s = auth.step([['CHAP_N', USER], ['CHAP_R', '0x' + '11'.repeat(16)]]);
    const text = JSON.stringify([s, auth]);
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(TARGET_SECRET);
    expect(JSON.parse(JSON.stringify(auth))).toEqual({ phase: 'failed' });
  });

  it('secret errors never echo the secret', () => {
    expect(chapSecretProblem('short-secret-value-that-is-too-long')).not.toContain('short-secret-value-that-is-too-long');
  });
});

describe('the secret rule', () => {
  it.each([
    ['a'.repeat(11), false],
    ['a'.repeat(12), true],
    ['a'.repeat(16), true],
    ['a'.repeat(17), false],
    ['ééééééééééé€', true], // 12 characters, more bytes
    ['', false],
    ['abc\ndefghijklm', false],
  ])('secret %j valid=%s', (secret, valid) => {
    expect(chapSecretProblem(secret) === undefined).toBe(valid);
  });
});
