import {
  DEFAULT_TARGET_KEY_CONFIG,
  KEY_TABLE,
  isExtensionKey,
  isSecurityKey,
  validateTargetKeyConfig,
  type NumericKeyDef,
  type TargetKeyConfig,
} from '../../iscsi/login-keys';
import { LOGIN_STATUS } from '../../iscsi/login-status';
import {
  createNegotiationState,
  negotiateOperational,
  targetDeclarations,
  type NegotiateOptions,
  type NegotiationState,
} from '../../iscsi/negotiation';
import { encodeTextKeys, parseTextKeys } from '../../iscsi/text';
import { isValidIscsiName } from '../../iscsi/names';

const INITIATOR = 'iqn.2004-10.com.ubuntu:01:e5b1b4d3a3';
const TARGET = 'iqn.2024-01.org.example:disk1';
const NAMES: Array<[string, string]> = [
  ['InitiatorName', INITIATOR],
  ['TargetName', TARGET],
];

type Opts = Partial<NegotiateOptions> & { cfg?: Partial<TargetKeyConfig> };

function options(o: Opts = {}): NegotiateOptions {
  const { cfg, ...rest } = o;
  return {
    targetLimits: { ...DEFAULT_TARGET_KEY_CONFIG, ...cfg },
    isLeading: true,
    stage: 'operational',
    ...rest,
  };
}

/** Negotiate one first request (names added) and return answers as a map. */
function first(pairs: Array<[string, string]>, o: Opts = {}, state = createNegotiationState()) {
  const r = negotiateOperational([...NAMES, ...pairs], state, options(o));
  return { ...r, state, answers: new Map(r.response) };
}

/** The target's answer to a single key in an otherwise plain first request. */
function answerTo(key: string, value: string, o: Opts = {}): string | undefined {
  const r = first([[key, value]], o);
  expect(r.error).toBeUndefined();
  return r.answers.get(key);
}

describe('KEY_TABLE', () => {
  it('holds every RFC 7143 key the brief lists', () => {
    for (const k of [
      'HeaderDigest', 'DataDigest', 'MaxConnections', 'InitialR2T', 'ImmediateData', 'MaxRecvDataSegmentLength',
      'MaxBurstLength', 'FirstBurstLength', 'DefaultTime2Wait', 'DefaultTime2Retain', 'MaxOutstandingR2T',
      'DataPDUInOrder', 'DataSequenceInOrder', 'ErrorRecoveryLevel', 'TaskReporting', 'iSCSIProtocolLevel',
      'OFMarker', 'IFMarker', 'OFMarkInt', 'IFMarkInt', 'SessionType', 'TargetName', 'InitiatorName', 'TargetAlias',
      'InitiatorAlias', 'TargetAddress', 'TargetPortalGroupTag', 'AuthMethod', 'SendTargets',
    ]) {
      expect(KEY_TABLE.has(k)).toBe(true);
    }
  });

  it.each([
    ['HeaderDigest', 'list', 'IO', 'connection', 'None'],
    ['MaxConnections', 'numeric-min', 'LO', 'session', 1],
    ['InitialR2T', 'boolean-or', 'LO', 'session', true],
    ['ImmediateData', 'boolean-and', 'LO', 'session', true],
    ['MaxRecvDataSegmentLength', 'declarative', 'ALL', 'connection', 8192],
    ['MaxBurstLength', 'numeric-min', 'LO', 'session', 262144],
    ['FirstBurstLength', 'numeric-min', 'LO', 'session', 65536],
    ['DefaultTime2Wait', 'numeric-max', 'LO', 'session', 2],
    ['DefaultTime2Retain', 'numeric-min', 'LO', 'session', 20],
    ['MaxOutstandingR2T', 'numeric-min', 'LO', 'session', 1],
    ['DataPDUInOrder', 'boolean-or', 'LO', 'session', true],
    ['DataSequenceInOrder', 'boolean-or', 'LO', 'session', true],
    ['ErrorRecoveryLevel', 'numeric-min', 'LO', 'session', 0],
    ['SessionType', 'declarative', 'LO', 'session', 'Normal'],
    ['AuthMethod', 'list', 'security', 'connection', 'None'],
  ])('%s is %s, %s, %s scope, default %p', (name, kind, phase, scope, dflt) => {
    const d = KEY_TABLE.get(name)!;
    expect([d.kind, d.phase, d.scope, d.default]).toEqual([kind, phase, scope, dflt]);
  });

  it('classifies security and extension keys', () => {
    expect(isSecurityKey('AuthMethod')).toBe(true);
    expect(isSecurityKey('CHAP_R')).toBe(true);
    expect(isSecurityKey('HeaderDigest')).toBe(false);
    expect(isExtensionKey('X-com.example.foo')).toBe(true);
    expect(isExtensionKey('X#Foo')).toBe(true);
    expect(isExtensionKey('MaxBurstLength')).toBe(false);
  });
});

describe('numeric keys: edge values', () => {
  // [key, our preference]; the answer is min/max(offer, preference) when valid, else Reject.
  const cases: Array<[string, number]> = [
    ['MaxConnections', 1],
    ['MaxBurstLength', 1048576],
    ['FirstBurstLength', 262144],
    ['DefaultTime2Wait', 2],
    ['DefaultTime2Retain', 20],
    ['MaxOutstandingR2T', 16],
    ['ErrorRecoveryLevel', 0],
    ['iSCSIProtocolLevel', 1],
  ];
  for (const [key, ours] of cases) {
    const def = KEY_TABLE.get(key) as NumericKeyDef;
    const result = (n: number) => String(def.kind === 'numeric-min' ? Math.min(n, ours) : Math.max(n, ours));
    const table: Array<[string, string]> = [
      [String(def.min), result(def.min)],
      [String(def.max), result(def.max)],
      [String(def.max + 1), 'Reject'],
      [`0x${def.max.toString(16)}`, result(def.max)],
      [`0b${Buffer.from([def.max >> 8 & 0xff, def.max & 0xff]).toString('base64')}`, result(def.max & 0xffff)],
      ['garbage', 'Reject'],
      ['', 'Reject'],
      ['-1', 'Reject'],
      ['1.5', 'Reject'],
      [`0${def.max}`, 'Reject'],
    ];
    if (def.min > 0) table.push([String(def.min - 1), 'Reject']);
    describe(`${key} (${def.kind}, ${def.min}..${def.max}, ours ${ours})`, () => {
      it.each(table)('offer %j -> %s', (offer, expected) => {
        // FirstBurstLength needs ImmediateData or InitialR2T=No to be relevant; the default ImmediateData=Yes does.
        expect(answerTo(key, offer)).toBe(expected);
      });
    });
  }

  it('records results in the state', () => {
    const r = first([
      ['MaxBurstLength', '16776192'],
      ['FirstBurstLength', '262144'],
      ['MaxOutstandingR2T', '1'],
      ['DefaultTime2Wait', '0'],
      ['DefaultTime2Retain', '0'],
      ['ErrorRecoveryLevel', '2'],
      ['MaxConnections', '8'],
    ]);
    expect(r.error).toBeUndefined();
    expect(r.state).toMatchObject({
      maxBurstLength: 1048576,
      firstBurstLength: 262144,
      maxOutstandingR2T: 1,
      defaultTime2Wait: 2,
      defaultTime2Retain: 0,
      errorRecoveryLevel: 0,
      maxConnections: 1,
    });
  });

  it('a Reject leaves the default in force', () => {
    const r = first([['MaxBurstLength', '100']]);
    expect(r.answers.get('MaxBurstLength')).toBe('Reject');
    expect(r.state.maxBurstLength).toBe(262144);
  });

  it('clamps FirstBurstLength to the MaxBurstLength negotiated in the same request', () => {
    const r = first([
      ['FirstBurstLength', '262144'],
      ['MaxBurstLength', '65536'],
    ]);
    expect(r.answers.get('FirstBurstLength')).toBe('65536');
    expect(r.answers.get('MaxBurstLength')).toBe('65536');
    expect(r.state.firstBurstLength).toBe(65536);
  });

  it('clamps FirstBurstLength to the MaxBurstLength of an earlier request', () => {
    const state = createNegotiationState();
    first([['MaxBurstLength', '4096']], {}, state);
    const r = negotiateOperational([['FirstBurstLength', '65536']], state, options());
    expect(r.response).toContainEqual(['FirstBurstLength', '4096']);
  });
});

describe('boolean keys', () => {
  it.each([
    // key, offer, expected answer with our defaults (InitialR2T No ok, ImmediateData Yes, in-order Yes)
    ['InitialR2T', 'Yes', 'Yes'],
    ['InitialR2T', 'No', 'No'],
    ['ImmediateData', 'Yes', 'Yes'],
    ['ImmediateData', 'No', 'No'],
    ['DataPDUInOrder', 'No', 'Yes'],
    ['DataPDUInOrder', 'Yes', 'Yes'],
    ['DataSequenceInOrder', 'No', 'Yes'],
    ['DataSequenceInOrder', 'Yes', 'Yes'],
    ['InitialR2T', 'yes', 'Reject'],
    ['ImmediateData', '', 'Reject'],
    ['DataPDUInOrder', '1', 'Reject'],
    ['DataSequenceInOrder', 'Yes,No', 'Reject'],
  ])('%s=%s -> %s', (key, offer, expected) => {
    expect(answerTo(key, offer)).toBe(expected);
  });

  it('OR with a target that insists on InitialR2T=Yes, AND with one refusing ImmediateData', () => {
    expect(answerTo('InitialR2T', 'No', { cfg: { initialR2T: true } })).toBe('Yes');
    expect(answerTo('ImmediateData', 'Yes', { cfg: { immediateData: false } })).toBe('No');
  });

  it('records open-iscsi style results', () => {
    const r = first([
      ['InitialR2T', 'No'],
      ['ImmediateData', 'Yes'],
      ['DataPDUInOrder', 'Yes'],
      ['DataSequenceInOrder', 'Yes'],
    ]);
    expect(r.state).toMatchObject({ initialR2T: false, immediateData: true, dataPDUInOrder: true, dataSequenceInOrder: true });
  });
});

describe('list keys', () => {
  it.each([
    ['HeaderDigest', 'CRC32C,None', 'optional', 'CRC32C'],
    ['HeaderDigest', 'None,CRC32C', 'optional', 'None'],
    ['HeaderDigest', 'None', 'optional', 'None'],
    ['DataDigest', 'CRC32C', 'optional', 'CRC32C'],
    ['DataDigest', 'MD5,CRC32C', 'optional', 'CRC32C'],
    ['DataDigest', 'None,CRC32C', 'required', 'CRC32C'],
    ['DataDigest', 'CRC32C,None', 'never', 'None'],
    ['HeaderDigest', 'MD5', 'optional', 'Reject'],
    ['HeaderDigest', '', 'optional', 'Reject'],
    ['HeaderDigest', 'CRC32C,,None', 'optional', 'Reject'],
    ['HeaderDigest', 'CRC32C', 'never', 'Reject'],
  ] as const)('%s=%s with policy %s -> %s', (key, offer, policy, expected) => {
    const cfg = key === 'HeaderDigest' ? { headerDigest: policy } : { dataDigest: policy };
    expect(answerTo(key, offer, { cfg })).toBe(expected);
  });

  it('fails the login when CRC32C is required and not offered', () => {
    const r = first([['HeaderDigest', 'None']], { cfg: { headerDigest: 'required' } });
    expect(r.error).toMatchObject(LOGIN_STATUS.INITIATOR_ERROR);
  });

  it('records digests', () => {
    const r = first([
      ['HeaderDigest', 'CRC32C,None'],
      ['DataDigest', 'None'],
    ]);
    expect(r.state.headerDigest).toBe(true);
    expect(r.state.dataDigest).toBe(false);
  });

  it.each([
    ['RFC3720', 'RFC3720'],
    ['FastAbort,RFC3720', 'RFC3720'],
    ['ResponseFence', 'Reject'],
  ])('TaskReporting=%s -> %s', (offer, expected) => {
    expect(answerTo('TaskReporting', offer)).toBe(expected);
  });
});

describe('declarative keys', () => {
  it('MaxRecvDataSegmentLength: records the initiator value and declares ours', () => {
    const r = first([['MaxRecvDataSegmentLength', '65536']]);
    expect(r.answers.get('MaxRecvDataSegmentLength')).toBe('262144');
    expect(r.state.maxRecvDataSegmentLength).toBe(65536);
    expect(r.state.targetMaxRecvDataSegmentLength).toBe(262144);
  });

  it('declares our MaxRecvDataSegmentLength even when the initiator did not', () => {
    const r = first([], { cfg: { maxRecvDataSegmentLength: 131072 } });
    expect(r.response).toContainEqual(['MaxRecvDataSegmentLength', '131072']);
    expect(r.state.maxRecvDataSegmentLength).toBe(8192); // initiator default
  });

  it('declares only once per connection', () => {
    const state = createNegotiationState();
    first([], {}, state);
    const r = negotiateOperational([['MaxRecvDataSegmentLength', '8192']], state, options());
    expect(r.response).toEqual([]);
    expect(state.maxRecvDataSegmentLength).toBe(8192);
  });

  it('does not declare during SecurityNegotiation (the initiator would not expect it there)', () => {
    const r = first([['AuthMethod', 'CHAP,None']], { stage: 'security' });
    expect(r.response.find(([k]) => k === 'MaxRecvDataSegmentLength')).toBeUndefined();
    expect(r.state.targetMaxRecvDataSegmentLength).toBe(8192);
    expect(targetDeclarations(r.state, DEFAULT_TARGET_KEY_CONFIG)).toEqual([['MaxRecvDataSegmentLength', '262144']]);
    expect(r.state.targetMaxRecvDataSegmentLength).toBe(262144);
  });

  it.each(['511', '16777216', 'x', '', '0'])('MaxRecvDataSegmentLength=%j fails the login', (v) => {
    const r = first([['MaxRecvDataSegmentLength', v]]);
    expect(r.error).toMatchObject(LOGIN_STATUS.INITIATOR_ERROR);
  });

  it.each([
    ['512', 512],
    ['16777215', 16777215],
    ['0x40000', 262144],
  ])('MaxRecvDataSegmentLength=%s is accepted', (v, n) => {
    expect(first([['MaxRecvDataSegmentLength', v]]).state.maxRecvDataSegmentLength).toBe(n);
  });

  it('declares TargetAlias and the portal group tag when configured', () => {
    const r = first([], { cfg: { targetAlias: 'disk one', targetPortalGroupTag: 7 } });
    expect(r.response).toEqual([
      ['TargetPortalGroupTag', '7'],
      ['MaxRecvDataSegmentLength', '262144'],
      ['TargetAlias', 'disk one'],
    ]);
  });

  it('sends the portal group tag in the first response only, for Normal sessions only', () => {
    const state = createNegotiationState();
    const r1 = negotiateOperational([...NAMES, ['AuthMethod', 'None']], state, options({ stage: 'security', cfg: { targetPortalGroupTag: 1 } }));
    expect(r1.response).toEqual([['TargetPortalGroupTag', '1']]);
    const r2 = negotiateOperational([['HeaderDigest', 'None']], state, options({ cfg: { targetPortalGroupTag: 1 } }));
    expect(r2.response.find(([k]) => k === 'TargetPortalGroupTag')).toBeUndefined();
    const d = negotiateOperational(
      [['InitiatorName', INITIATOR], ['SessionType', 'Discovery']],
      createNegotiationState(),
      options({ cfg: { targetPortalGroupTag: 1 } }),
    );
    expect(d.response.find(([k]) => k === 'TargetPortalGroupTag')).toBeUndefined();
  });

  it('records names and alias', () => {
    const r = first([['InitiatorAlias', 'host1']]);
    expect(r.state).toMatchObject({ initiatorName: INITIATOR, targetName: TARGET, initiatorAlias: 'host1', sessionType: 'Normal' });
    expect(r.answers.has('InitiatorName')).toBe(false);
    expect(r.answers.has('InitiatorAlias')).toBe(false);
  });

  it.each(['TargetAlias', 'TargetAddress', 'TargetPortalGroupTag'])('%s from the initiator -> Reject', (key) => {
    expect(answerTo(key, key === 'TargetPortalGroupTag' ? '1' : 'x')).toBe('Reject');
  });

  it('SendTargets during login -> Reject', () => {
    expect(answerTo('SendTargets', 'All')).toBe('Reject');
  });

  it('X#NodeArchitecture is accepted silently', () => {
    const r = first([['X#NodeArchitecture', 'ExampleOS/v1.0']]);
    expect(r.error).toBeUndefined();
    expect(r.answers.has('X#NodeArchitecture')).toBe(false);
  });
});

describe('NotUnderstood / Irrelevant / obsolete keys', () => {
  it.each([
    ['X-com.example.Foo', 'bar'],
    ['X#Unregistered', 'x'],
    ['FooBar', '1'],
    ['RDMAExtensions', 'No'],
    ['Headerdigest', 'None'], // keys are case-sensitive
  ])('%s -> NotUnderstood', (key, value) => {
    expect(answerTo(key, value)).toBe('NotUnderstood');
  });

  it.each([
    ['IFMarker', 'No', 'No'],
    ['OFMarker', 'Yes', 'No'],
    ['OFMarker', 'maybe', 'Reject'],
    ['IFMarkInt', '2048', 'Reject'],
    ['OFMarkInt', '2048~8192', 'Reject'],
  ])('obsolete %s=%s -> %s (RFC 7143 §13.26)', (key, value, expected) => {
    expect(answerTo(key, value)).toBe(expected);
  });

  it('FirstBurstLength is Irrelevant with InitialR2T=Yes and ImmediateData=No', () => {
    const r = first([
      ['InitialR2T', 'Yes'],
      ['ImmediateData', 'No'],
      ['FirstBurstLength', '65536'],
    ]);
    expect(r.answers.get('FirstBurstLength')).toBe('Irrelevant');
    expect(r.state.firstBurstLength).toBe(65536);
  });

  it('FirstBurstLength is relevant when only one of the two holds', () => {
    expect(first([['InitialR2T', 'Yes'], ['FirstBurstLength', '8192']]).answers.get('FirstBurstLength')).toBe('8192');
    expect(first([['ImmediateData', 'No'], ['InitialR2T', 'No'], ['FirstBurstLength', '8192']]).answers.get('FirstBurstLength')).toBe('8192');
  });

  it('FirstBurstLength is Irrelevant when our config forces InitialR2T=Yes and ImmediateData=No', () => {
    const cfg = { initialR2T: true, immediateData: false };
    const r = first([['InitialR2T', 'No'], ['ImmediateData', 'Yes'], ['FirstBurstLength', '8192']], { cfg });
    expect(r.answers.get('FirstBurstLength')).toBe('Irrelevant');
  });

  describe('Discovery sessions', () => {
    const discovery = (pairs: Array<[string, string]>) =>
      negotiateOperational([['InitiatorName', INITIATOR], ['SessionType', 'Discovery'], ...pairs], createNegotiationState(), options());

    it.each([
      ['MaxConnections', '1'],
      ['InitialR2T', 'No'],
      ['ImmediateData', 'Yes'],
      ['MaxBurstLength', '262144'],
      ['FirstBurstLength', '65536'],
      ['MaxOutstandingR2T', '1'],
      ['DataPDUInOrder', 'Yes'],
      ['DataSequenceInOrder', 'Yes'],
      ['TaskReporting', 'RFC3720'],
      ['iSCSIProtocolLevel', '1'],
    ])('%s -> Irrelevant', (key, value) => {
      const r = discovery([[key, value]]);
      expect(r.error).toBeUndefined();
      expect(new Map(r.response).get(key)).toBe('Irrelevant');
    });

    it('negotiates the keys that do apply (open-iscsi discovery login)', () => {
      const r = discovery([
        ['HeaderDigest', 'None'],
        ['DataDigest', 'None'],
        ['DefaultTime2Wait', '2'],
        ['DefaultTime2Retain', '0'],
        ['IFMarker', 'No'],
        ['OFMarker', 'No'],
        ['ErrorRecoveryLevel', '0'],
        ['MaxRecvDataSegmentLength', '32768'],
      ]);
      expect(r.error).toBeUndefined();
      expect(r.response).toEqual([
        ['HeaderDigest', 'None'],
        ['DataDigest', 'None'],
        ['DefaultTime2Wait', '2'],
        ['DefaultTime2Retain', '0'],
        ['IFMarker', 'No'],
        ['OFMarker', 'No'],
        ['ErrorRecoveryLevel', '0'],
        ['MaxRecvDataSegmentLength', '262144'],
      ]);
    });

    it('does not need TargetName and ignores one', () => {
      const r = discovery([['TargetName', 'not a name']]);
      expect(r.error).toBeUndefined();
      expect(r.response.find(([k]) => k === 'TargetName')).toBeUndefined();
    });
  });
});

describe('protocol errors', () => {
  it('a key repeated in a later request of the same login', () => {
    const state = createNegotiationState();
    expect(first([['MaxBurstLength', '65536']], {}, state).error).toBeUndefined();
    const r = negotiateOperational([['MaxBurstLength', '65536']], state, options());
    expect(r.error).toMatchObject(LOGIN_STATUS.INITIATOR_ERROR);
    expect(r.error!.reason).toMatch(/MaxBurstLength/);
  });

  it('a key repeated within one request', () => {
    const r = first([['DataDigest', 'None'], ['DataDigest', 'None']]);
    expect(r.error).toMatchObject(LOGIN_STATUS.INITIATOR_ERROR);
  });

  it('a failed request changes nothing in the state', () => {
    const state = createNegotiationState();
    const r = first([['MaxBurstLength', '4096'], ['MaxRecvDataSegmentLength', 'bad']], {}, state);
    expect(r.error).toBeDefined();
    expect(state.maxBurstLength).toBe(262144);
    expect(state.requests).toBe(0);
    expect(state.received.size).toBe(0);
  });

  it('reserved values offered as values', () => {
    expect(first([['MaxBurstLength', 'Reject']]).error).toMatchObject(LOGIN_STATUS.INITIATOR_ERROR);
    expect(first([['HeaderDigest', 'NotUnderstood']]).error).toMatchObject(LOGIN_STATUS.INITIATOR_ERROR);
  });

  it('a reply to a key we declared is accepted silently', () => {
    const state = createNegotiationState();
    first([], { cfg: { targetAlias: 'x' } }, state);
    const r = negotiateOperational([['TargetAlias', 'NotUnderstood']], state, options());
    expect(r).toEqual({ response: [] });
  });

  it('security keys in the operational stage', () => {
    expect(first([['AuthMethod', 'None']]).error).toMatchObject(LOGIN_STATUS.INITIATOR_ERROR);
    expect(first([['CHAP_A', '5']]).error).toMatchObject(LOGIN_STATUS.INITIATOR_ERROR);
  });

  it('security keys are left to CHAP in the security stage', () => {
    const r = first([['AuthMethod', 'CHAP,None'], ['CHAP_A', '5']], { stage: 'security' });
    expect(r.error).toBeUndefined();
    expect(r.response).toEqual([]);
  });

  it('operational keys offered during SecurityNegotiation are negotiated', () => {
    const r = first([['AuthMethod', 'None'], ['HeaderDigest', 'None']], { stage: 'security' });
    expect(r.response).toEqual([['HeaderDigest', 'None']]);
  });
});

describe('leading-only keys on a non-leading connection', () => {
  const join = (pairs: Array<[string, string]>) =>
    negotiateOperational([...NAMES, ...pairs], createNegotiationState(), options({ isLeading: false }));

  it.each([
    ['MaxConnections', '2'],
    ['InitialR2T', 'No'],
    ['ImmediateData', 'Yes'],
    ['MaxBurstLength', '262144'],
    ['FirstBurstLength', '65536'],
    ['DefaultTime2Wait', '2'],
    ['DefaultTime2Retain', '20'],
    ['MaxOutstandingR2T', '1'],
    ['DataPDUInOrder', 'Yes'],
    ['DataSequenceInOrder', 'Yes'],
    ['ErrorRecoveryLevel', '0'],
    ['TaskReporting', 'RFC3720'],
    ['iSCSIProtocolLevel', '1'],
  ])('%s -> Reject', (key, value) => {
    const r = join([[key, value]]);
    expect(r.error).toBeUndefined();
    expect(new Map(r.response).get(key)).toBe('Reject');
  });

  it('connection keys and SessionType are still accepted', () => {
    const r = join([
      ['SessionType', 'Normal'],
      ['HeaderDigest', 'CRC32C'],
      ['MaxRecvDataSegmentLength', '65536'],
    ]);
    expect(r.error).toBeUndefined();
    expect(r.response).toEqual([
      ['HeaderDigest', 'CRC32C'],
      ['MaxRecvDataSegmentLength', '262144'],
    ]);
  });
});

describe('first request: names and session type', () => {
  it('missing InitiatorName -> 0207h', () => {
    const r = negotiateOperational([['TargetName', TARGET]], createNegotiationState(), options());
    expect(r.error).toMatchObject({ statusClass: 2, statusDetail: 7 });
  });

  it('missing TargetName in a Normal session -> 0207h', () => {
    const r = negotiateOperational([['InitiatorName', INITIATOR]], createNegotiationState(), options());
    expect(r.error).toMatchObject({ statusClass: 2, statusDetail: 7 });
  });

  it('missing TargetName with explicit SessionType=Normal -> 0207h', () => {
    const r = negotiateOperational([['InitiatorName', INITIATOR], ['SessionType', 'Normal']], createNegotiationState(), options());
    expect(r.error).toMatchObject(LOGIN_STATUS.MISSING_PARAMETER);
  });

  it('unknown target -> 0203h via the lookup callback', () => {
    const seen: string[] = [];
    const targetExists = (n: string) => {
      seen.push(n);
      return n === TARGET;
    };
    expect(first([], { targetExists }).error).toBeUndefined();
    const r = negotiateOperational(
      [['InitiatorName', INITIATOR], ['TargetName', 'iqn.2024-01.org.example:other']],
      createNegotiationState(),
      options({ targetExists }),
    );
    expect(r.error).toMatchObject(LOGIN_STATUS.TARGET_NOT_FOUND);
    expect(seen).toEqual([TARGET, 'iqn.2024-01.org.example:other']);
  });

  it.each(['InitiatorName', 'TargetName'])('malformed %s -> 0200h', (key) => {
    const pairs: Array<[string, string]> = NAMES.map(([k, v]) => [k, k === key ? 'bogus name' : v]);
    const r = negotiateOperational(pairs, createNegotiationState(), options());
    expect(r.error).toMatchObject(LOGIN_STATUS.INITIATOR_ERROR);
  });

  it('names are needed in the first request only', () => {
    const state = createNegotiationState();
    first([], {}, state);
    const r = negotiateOperational([['HeaderDigest', 'None']], state, options());
    expect(r.error).toBeUndefined();
  });

  it.each([
    ['Discovery', undefined],
    ['Normal', undefined],
    ['Other', LOGIN_STATUS.SESSION_TYPE_NOT_SUPPORTED],
    ['', LOGIN_STATUS.INITIATOR_ERROR],
  ])('SessionType=%j', (value, error) => {
    const r = negotiateOperational([...NAMES, ['SessionType', value]], createNegotiationState(), options());
    if (error) expect(r.error).toMatchObject(error);
    else expect(r.error).toBeUndefined();
  });

  it('SessionType may not change during login', () => {
    const state = createNegotiationState();
    first([], {}, state);
    const r = negotiateOperational([['SessionType', 'Discovery']], state, options());
    expect(r.error).toMatchObject(LOGIN_STATUS.INITIATOR_ERROR);
  });

  it('the caller-known session type is used when the request has none', () => {
    const r = negotiateOperational([['InitiatorName', INITIATOR], ['MaxBurstLength', '512']], createNegotiationState(), options({ sessionType: 'Discovery' }));
    expect(r.error).toBeUndefined();
    expect(r.response).toContainEqual(['MaxBurstLength', 'Irrelevant']);
  });
});

describe('a full open-iscsi operational request (golden text)', () => {
  it('answers every key', () => {
    const text = Buffer.from(
      'InitiatorName=iqn.2004-10.com.ubuntu:01:e5b1b4d3a3\0InitiatorAlias=host1\0TargetName=iqn.2024-01.org.example:disk1\0' +
        'SessionType=Normal\0HeaderDigest=None\0DataDigest=None\0DefaultTime2Wait=2\0DefaultTime2Retain=0\0' +
        'IFMarker=No\0OFMarker=No\0ErrorRecoveryLevel=0\0InitialR2T=No\0ImmediateData=Yes\0MaxBurstLength=16776192\0' +
        'FirstBurstLength=262144\0MaxOutstandingR2T=1\0MaxConnections=1\0DataPDUInOrder=Yes\0DataSequenceInOrder=Yes\0' +
        'MaxRecvDataSegmentLength=262144\0',
    );
    const parsed = parseTextKeys(text);
    if (!parsed.ok) throw new Error(parsed.reason);
    const state: NegotiationState = createNegotiationState();
    const r = negotiateOperational(parsed.pairs, state, options({ cfg: { targetPortalGroupTag: 1 } }));
    expect(r.error).toBeUndefined();
    expect(encodeTextKeys(r.response).toString('latin1')).toBe(
      'HeaderDigest=None\0DataDigest=None\0DefaultTime2Wait=2\0DefaultTime2Retain=0\0IFMarker=No\0OFMarker=No\0' +
        'ErrorRecoveryLevel=0\0InitialR2T=No\0ImmediateData=Yes\0MaxBurstLength=1048576\0FirstBurstLength=262144\0' +
        'MaxOutstandingR2T=1\0MaxConnections=1\0DataPDUInOrder=Yes\0DataSequenceInOrder=Yes\0' +
        'TargetPortalGroupTag=1\0MaxRecvDataSegmentLength=262144\0',
    );
    expect(state).toMatchObject({
      headerDigest: false,
      dataDigest: false,
      maxRecvDataSegmentLength: 262144,
      targetMaxRecvDataSegmentLength: 262144,
      maxBurstLength: 1048576,
      firstBurstLength: 262144,
      initialR2T: false,
      immediateData: true,
      maxOutstandingR2T: 1,
      maxConnections: 1,
      dataPDUInOrder: true,
      dataSequenceInOrder: true,
      errorRecoveryLevel: 0,
      defaultTime2Wait: 2,
      defaultTime2Retain: 0,
    });
  });
});

describe('isValidIscsiName', () => {
  it.each([
    'iqn.2004-10.com.ubuntu:01:e5b1b4d3a3',
    'iqn.1991-05.com.microsoft:win-host.example.local',
    'iqn.1998-01.com.vmware:esx01-6f1a2b3c',
    'iqn.2024-01.org.example',
    'IQN.2024-01.org.example:Disk1',
    'iqn.2024-12.example:ünïcode',
    'eui.02004567A425678D',
    'naa.52004567BA64678D',
    'naa.62004567BA64678D0123456789ABCDEF',
    'iqn.2024-01.a:' + 'x'.repeat(223 - 'iqn.2024-01.a:'.length),
  ])('accepts %s', (name) => {
    expect(isValidIscsiName(name)).toBe(true);
  });

  it.each([
    '',
    'iqn.',
    'iqn.2024-13.org.example',
    'iqn.2024-00.org.example',
    'iqn.24-01.org.example',
    'iqn.2024-01',
    'iqn.2024-01.',
    'iqn.2024-01.-bad.example',
    'iqn.2024-01.org.example:has space',
    'iqn.2024-01.org.example:under_score',
    'iqn.2024-01.org.example:comma,x',
    'eui.02004567A425678',
    'eui.02004567A425678DX',
    'naa.52004567BA64678D00',
    'foo.2024-01.org.example',
    'iqn.2024-01.a:' + 'x'.repeat(224 - 'iqn.2024-01.a:'.length),
  ])('rejects %j', (name) => {
    expect(isValidIscsiName(name)).toBe(false);
  });
});

describe('validateTargetKeyConfig', () => {
  it('accepts the defaults and freezes the result', () => {
    const r = validateTargetKeyConfig();
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.config).toEqual(DEFAULT_TARGET_KEY_CONFIG);
      expect(Object.isFrozen(r.config)).toBe(true);
    }
  });

  it.each([
    [{ maxRecvDataSegmentLength: 511 }, 'maxRecvDataSegmentLength'],
    [{ maxBurstLength: 16777216 }, 'maxBurstLength'],
    [{ firstBurstLength: 2097152 }, 'firstBurstLength'],
    [{ errorRecoveryLevel: 1 }, 'errorRecoveryLevel'],
    [{ dataPDUInOrder: false }, 'dataPDUInOrder'],
    [{ headerDigest: 'sometimes' }, 'headerDigest'],
    [{ maxConnections: 0 }, 'maxConnections'],
    [{ targetPortalGroupTag: 65536 }, 'targetPortalGroupTag'],
  ])('reports the bad key path for %j', (overrides, path) => {
    const r = validateTargetKeyConfig(overrides);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors.map((e) => e.path)).toContain(path);
  });
});
