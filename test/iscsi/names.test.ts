/**
 * One iSCSI name validator (RFC 7143 §4.2.7, RFC 3722): a name the config
 * schema accepts for a target or an ACL must be one login accepts as
 * TargetName / InitiatorName, and the other way round. Before, the schema's
 * own regex let `iqn.2024-01.com.example:disk_1` and `iqn.2024-13.x` load,
 * and then nobody could log in to them (login answered INITIATOR ERROR).
 */
import fc from 'fast-check';
import { ConfigError, parseConfigText } from '../../src/config';
import { DEFAULT_TARGET_KEY_CONFIG } from '../../iscsi/login-keys';
import { createNegotiationState, negotiateOperational } from '../../iscsi/negotiation';
import { isValidIscsiName } from '../../iscsi/names';

const GOOD_INITIATOR = 'iqn.2004-10.com.ubuntu:01:e5b1b4d3a3';
const GOOD_TARGET = 'iqn.2024-01.org.example:disk1';

function configAccepts(targetIqn: string, initiator: string): boolean {
  const yaml = [
    'dataDir: /tmp/xcopyd-names-test',
    'targets:',
    `  - iqn: ${JSON.stringify(targetIqn)}`,
    `    acls: [{ initiator: ${JSON.stringify(initiator)} }]`,
    '    luns: [{ lun: 0, path: lun0.img, size: 1MiB }]',
  ].join('\n');
  try {
    parseConfigText(yaml, 'test');
    return true;
  } catch (err) {
    if (err instanceof ConfigError) return false;
    throw err;
  }
}

function loginAccepts(key: 'TargetName' | 'InitiatorName', name: string): boolean {
  const pairs: Array<[string, string]> = key === 'TargetName'
    ? [['InitiatorName', GOOD_INITIATOR], ['TargetName', name]]
    : [['InitiatorName', name], ['TargetName', GOOD_TARGET]];
  const r = negotiateOperational(pairs, createNegotiationState(), {
    targetLimits: DEFAULT_TARGET_KEY_CONFIG,
    isLeading: true,
    stage: 'operational',
    targetExists: () => true,
  });
  return r.error === undefined;
}

const EDGE_NAMES = [
  'iqn.2024-01.com.example:disk_1',
  'iqn.2024-13.x',
  'iqn.2024-00.org.example',
  'iqn.2024-01.org.example:has space',
  'iqn.2024-01.org.example:comma,x',
  'iqn.2024-01.-bad.example',
  'iqn.2024-01.org.example',
  'iqn.2024-01.org.example:disk1',
  'IQN.2024-01.org.example:Disk1',
  'iqn.2024-12.example:ünïcode',
  'iqn.2024-12.example:no\u00a0break',
  'eui.02004567A425678D',
  'naa.52004567BA64678D',
  'naa.62004567BA64678D0123456789ABCDEF',
  'naa.52004567BA64678D00',
  'iqn.2024-01.a:' + 'x'.repeat(223 - 'iqn.2024-01.a:'.length),
  'iqn.2024-01.a:' + 'x'.repeat(224 - 'iqn.2024-01.a:'.length),
];

describe('one iSCSI name validator for config and login', () => {
  it.each(EDGE_NAMES)('config and login agree on %j', (name) => {
    const login = loginAccepts('TargetName', name);
    expect(loginAccepts('InitiatorName', name)).toBe(login);
    expect(configAccepts(name, GOOD_INITIATOR)).toBe(login);
    expect(configAccepts(GOOD_TARGET, name)).toBe(login);
  });

  it('the names from the issue are refused by the config, as login refuses them', () => {
    expect(configAccepts('iqn.2024-01.com.example:disk_1', GOOD_INITIATOR)).toBe(false);
    expect(configAccepts('iqn.2024-13.x', GOOD_INITIATOR)).toBe(false);
    expect(loginAccepts('TargetName', 'iqn.2024-01.com.example:disk_1')).toBe(false);
    expect(loginAccepts('TargetName', 'iqn.2024-13.x')).toBe(false);
  });

  it('agree on generated names (bounded)', () => {
    const piece = fc.constantFrom('iqn.', 'eui.', 'naa.', '2024-', '01', '13', '.', ':', '-', '_', 'a', 'Z', '0', '9',
      'example', 'com', ' ', 'ü', '02004567A425678D', ',');
    fc.assert(
      fc.property(fc.array(piece, { minLength: 1, maxLength: 12 }), (parts) => {
        const name = parts.join('');
        const login = loginAccepts('TargetName', name);
        return configAccepts(name, GOOD_INITIATOR) === login && configAccepts(GOOD_TARGET, name) === login;
      }),
      { numRuns: 400 },
    );
  });
});

describe('isValidIscsiName (iscsi/names)', () => {
  // RFC 3722 §6: characters of the stringprep tables C.1.2 - C.9 MUST NOT appear in a name.
  it.each([
    ['no-break space (C.1.2)', '\u00a0'],
    ['zero width space (C.1.2)', '\u200b'],
    ['zero width joiner (C.2.2)', '\u200d'],
    ['private use (C.3)', '\ue000'],
    ['noncharacter (C.4)', '\ufdd0'],
    ['replacement character (C.6)', '\ufffd'],
    ['ideographic description (C.7)', '\u2ff0'],
    ['right-to-left mark (C.8)', '\u200f'],
    ['language tag (C.9)', '\u{e0001}'],
  ])('refuses a %s', (_what, ch) => {
    expect(isValidIscsiName(`iqn.2024-12.example:a${ch}b`)).toBe(false);
  });

  it('takes letters in either case (RFC 3722 folds case before comparing) and non-ASCII letters', () => {
    expect(isValidIscsiName('IQN.2024-01.ORG.EXAMPLE:DISK1')).toBe(true);
    expect(isValidIscsiName('iqn.2024-12.example:日本')).toBe(true);
  });
});
