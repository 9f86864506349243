import fc from 'fast-check';
import {
  DEFAULT_TEXT_LIMIT,
  MAX_LARGE_BINARY_TEXT_LENGTH,
  TextAccumulator,
  encodeBooleanValue,
  encodeHexValue,
  encodeTextKeys,
  isTextValue,
  isValidKeyName,
  parseBinaryValue,
  parseBooleanValue,
  parseBoundedNumber,
  parseListValue,
  parseNumericValue,
  parseTextKeys,
} from '../../iscsi/text';

const bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

describe('parseTextKeys', () => {
  it('parses a golden login text (open-iscsi style first request)', () => {
    const data = bytes(
      'InitiatorName=iqn.2004-10.com.ubuntu:01:e5b1b4d3a3\0' +
        'InitiatorAlias=host1\0' +
        'TargetName=iqn.2024-01.org.example:disk1\0' +
        'SessionType=Normal\0' +
        'AuthMethod=CHAP,None\0',
    );
    const r = parseTextKeys(data);
    expect(r).toEqual({
      ok: true,
      pairs: [
        ['InitiatorName', 'iqn.2004-10.com.ubuntu:01:e5b1b4d3a3'],
        ['InitiatorAlias', 'host1'],
        ['TargetName', 'iqn.2024-01.org.example:disk1'],
        ['SessionType', 'Normal'],
        ['AuthMethod', 'CHAP,None'],
      ],
    });
  });

  it.each([
    ['missing final NUL', 'A=1\0B=2', [['A', '1'], ['B', '2']]],
    ['trailing padding NULs', 'A=1\0B=2\0\0\0', [['A', '1'], ['B', '2']]],
    ['empty data', '', []],
    ['only padding', '\0\0\0\0', []],
    ['empty value', 'SendTargets=\0', [['SendTargets', '']]],
    ['value containing =', 'CHAP_C=0bAAE=\0', [['CHAP_C', '0bAAE=']]],
    ['UTF-8 alias', 'InitiatorAlias=hôte\0', [['InitiatorAlias', 'hôte']]],
    ['X- key', 'X-com.example.foo=bar\0', [['X-com.example.foo', 'bar']]],
    ['X# key', 'X#NodeArchitecture=ExampleOS/v1.0\0', [['X#NodeArchitecture', 'ExampleOS/v1.0']]],
  ])('accepts %s', (_name, text, pairs) => {
    expect(parseTextKeys(bytes(text))).toEqual({ ok: true, pairs });
  });

  it.each([
    ['no =', 'HeaderDigest\0', /no '='/],
    ['empty key', '=None\0', /empty key/],
    ['empty item in the middle', 'A=1\0\0B=2\0', /empty key=value item/],
    ['lower-case first letter', 'headerDigest=None\0', /invalid key name/],
    ['space in key', 'Header Digest=None\0', /invalid key name/],
    ['duplicate key', 'A=1\0B=2\0A=1\0', /duplicate key A/],
    ['invalid UTF-8', Buffer.from([0x41, 0x3d, 0xff, 0xfe, 0]), /UTF-8/],
  ])('rejects %s', (_name, input, reason) => {
    const r = parseTextKeys(typeof input === 'string' ? bytes(input) : input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(reason);
  });

  it('allows duplicate keys only when asked (SendTargets answers)', () => {
    const data = bytes('TargetName=iqn.2024-01.a:x\0TargetAddress=10.0.0.1:3260,1\0TargetAddress=10.0.0.2:3260,1\0');
    expect(parseTextKeys(data).ok).toBe(false);
    expect(parseTextKeys(data, { allowDuplicateKeys: true }).ok).toBe(true);
  });

  it('enforces the 63-byte key limit', () => {
    const k63 = 'K' + 'e'.repeat(62);
    expect(parseTextKeys(bytes(`${k63}=v\0`)).ok).toBe(true);
    const r = parseTextKeys(bytes(`${k63}e=v\0`));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/63/);
  });

  it('enforces the 255-byte value limit, in bytes not characters', () => {
    expect(parseTextKeys(bytes(`A=${'v'.repeat(255)}\0`)).ok).toBe(true);
    expect(parseTextKeys(bytes(`A=${'v'.repeat(256)}\0`)).ok).toBe(false);
    // 128 two-byte characters = 256 bytes
    expect(parseTextKeys(bytes(`InitiatorAlias=${'é'.repeat(128)}\0`)).ok).toBe(false);
  });

  it('allows long large-binary values for CHAP_C/CHAP_R only', () => {
    const hex = `0x${'ab'.repeat(1024)}`; // 1024 bytes binary, 2050 characters
    expect(parseTextKeys(bytes(`CHAP_C=${hex}\0CHAP_R=${hex}\0`)).ok).toBe(true);
    expect(parseTextKeys(bytes(`CHAP_N=${hex}\0`)).ok).toBe(false);
    const max = 'a'.repeat(MAX_LARGE_BINARY_TEXT_LENGTH);
    expect(parseTextKeys(bytes(`CHAP_R=${max}\0`)).ok).toBe(true);
    expect(parseTextKeys(bytes(`CHAP_R=${max}a\0`)).ok).toBe(false);
  });

  it('accepts any Uint8Array view', () => {
    const backing = bytes('xxA=1\0B=2\0yy');
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 2, 8);
    expect(parseTextKeys(view)).toEqual({ ok: true, pairs: [['A', '1'], ['B', '2']] });
  });
});

describe('encodeTextKeys', () => {
  it('produces key=value NUL-terminated golden bytes', () => {
    const out = encodeTextKeys([
      ['HeaderDigest', 'None'],
      ['MaxRecvDataSegmentLength', '262144'],
    ]);
    expect(out.toString('latin1')).toBe('HeaderDigest=None\0MaxRecvDataSegmentLength=262144\0');
  });

  it('encodes nothing as an empty buffer', () => {
    expect(encodeTextKeys([]).length).toBe(0);
  });

  it.each([
    ['bad key', [['bad key', 'x']]],
    ['NUL in value', [['A', 'x\0y']]],
    ['overlong value', [['A', 'x'.repeat(256)]]],
  ] as Array<[string, Array<[string, string]>]>)('throws on %s', (_n, pairs) => {
    expect(() => encodeTextKeys(pairs)).toThrow();
  });
});

describe('parseTextKeys/encodeTextKeys properties', () => {
  const keyArb = fc
    .tuple(
      fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ'.split('')),
      fc.stringMatching(/^[A-Za-z0-9.\-+@_]{0,62}$/),
    )
    .map(([a, b]) => a + b);
  const valueArb = fc
    .string({ unit: 'grapheme', maxLength: 80 })
    .filter((v) => !v.includes('\0') && Buffer.byteLength(v) <= 255);

  it('round-trips valid unique keys', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(keyArb, valueArb), { selector: (p) => p[0], maxLength: 20 }), (pairs) => {
        const r = parseTextKeys(encodeTextKeys(pairs));
        expect(r).toEqual({ ok: true, pairs });
      }),
    );
  });

  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (data) => {
        const r = parseTextKeys(data);
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on random key=value-ish text', () => {
    const chunk = fc.constantFrom('A', 'b', '=', '\0', 'x', 'CHAP_C', '0x', 'é', '#', 'X');
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 100 }), (parts) => {
        const r = parseTextKeys(Buffer.from(parts.join(''), 'utf8'));
        if (r.ok) for (const [k] of r.pairs) expect(isValidKeyName(k)).toBe(true);
      }),
    );
  });
});

describe('TextAccumulator', () => {
  it('passes a single PDU through without copying', () => {
    const acc = new TextAccumulator();
    const data = bytes('A=1\0');
    const r = acc.push(data, false);
    expect(r.status).toBe('complete');
    if (r.status === 'complete') expect(r.data.buffer).toBe(data.buffer);
  });

  it('joins a pair split across PDUs and copies the chunks', () => {
    const acc = new TextAccumulator();
    const first = bytes('InitiatorName=iqn.2024-');
    expect(acc.push(first, true)).toEqual({ status: 'partial' });
    first.fill(0); // the receive buffer gets reused
    expect(acc.size).toBe(23);
    const r = acc.push(bytes('01.a:b\0'), false);
    expect(r.status).toBe('complete');
    if (r.status === 'complete') {
      expect(parseTextKeys(r.data)).toEqual({ ok: true, pairs: [['InitiatorName', 'iqn.2024-01.a:b']] });
    }
    expect(acc.size).toBe(0);
  });

  it('splits at every offset and still parses the same pairs', () => {
    const whole = bytes('HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=262144\0');
    for (let cut = 0; cut <= whole.length; cut++) {
      const acc = new TextAccumulator();
      const a = acc.push(whole.subarray(0, cut), true);
      expect(a.status).toBe('partial');
      const b = acc.push(whole.subarray(cut), false);
      expect(b.status).toBe('complete');
      if (b.status === 'complete') expect(b.data.equals(whole)).toBe(true);
    }
  });

  it('errors past the size cap and resets', () => {
    expect(DEFAULT_TEXT_LIMIT).toBe(65536);
    const acc = new TextAccumulator(10);
    expect(acc.push(bytes('A=12345'), true).status).toBe('partial');
    const r = acc.push(bytes('6789'), true);
    expect(r).toEqual({ status: 'error', reason: 'text exceeds 10 bytes' });
    expect(acc.size).toBe(0);
    expect(acc.push(bytes('A=1\0'), false).status).toBe('complete');
  });

  it('accepts exactly the cap', () => {
    const acc = new TextAccumulator(8);
    expect(acc.push(bytes('A=1\0'), true).status).toBe('partial');
    expect(acc.push(bytes('B=2\0'), false).status).toBe('complete');
  });
});

describe('value forms', () => {
  it.each([
    ['0', 0n],
    ['8192', 8192n],
    ['0x2000', 8192n],
    ['0X2000', 8192n],
    ['0x0', 0n],
    ['0b IA==', undefined],
    ['0bIAA=', 0x2000n],
    ['0BIAA=', 0x2000n],
    ['0bIAA', 0x2000n], // unpadded base64 tolerated
    ['18446744073709551615', (1n << 64n) - 1n],
    ['18446744073709551616', undefined],
    ['0xffffffffffffffff', (1n << 64n) - 1n],
    ['0x10000000000000000', undefined],
    ['', undefined],
    ['01', undefined], // RFC 7143 §6.1 decimal-constant: no leading zeros
    ['-1', undefined],
    ['+1', undefined],
    ['1.0', undefined],
    [' 1', undefined],
    ['0x', undefined],
    ['0xg', undefined],
    ['0b', undefined],
    ['0b!!', undefined],
    ['0bA', undefined],
    ['1e3', undefined],
    ['abc', undefined],
  ])('parseNumericValue(%j) = %s', (text, expected) => {
    expect(parseNumericValue(text)).toBe(expected);
  });

  it('parseBoundedNumber distinguishes malformed from out of range', () => {
    expect(parseBoundedNumber('512', 512, 16777215)).toEqual({ ok: true, value: 512 });
    expect(parseBoundedNumber('511', 512, 16777215)).toEqual({ ok: false, reason: 'out-of-range' });
    expect(parseBoundedNumber('16777216', 512, 16777215)).toEqual({ ok: false, reason: 'out-of-range' });
    expect(parseBoundedNumber('0xffffff', 512, 16777215)).toEqual({ ok: true, value: 16777215 });
    expect(parseBoundedNumber('huge', 512, 16777215)).toEqual({ ok: false, reason: 'malformed' });
  });

  it.each([
    ['0x00', [0]],
    ['0x1', [1]], // odd digit count: implied leading zero nibble
    ['0xABC', [0x0a, 0xbc]],
    ['0xdeadBEEF', [0xde, 0xad, 0xbe, 0xef]],
    ['0b3q2+7w==', [0xde, 0xad, 0xbe, 0xef]],
    ['0bAAEC', [0, 1, 2]],
  ])('parseBinaryValue(%j)', (text, expected) => {
    expect([...(parseBinaryValue(text) ?? [])]).toEqual(expected);
  });

  it.each(['', '0x', '0b', '255', 'deadbeef', '0xzz', '0b====', '0bA', '0bA=', '0bAB=C'])(
    'parseBinaryValue rejects %j',
    (text) => {
      expect(parseBinaryValue(text)).toBeUndefined();
    },
  );

  it('encodeHexValue round-trips with parseBinaryValue', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (b) => {
        const text = encodeHexValue(b);
        expect(text.startsWith('0x')).toBe(true);
        expect(Buffer.compare(parseBinaryValue(text)!, Buffer.from(b))).toBe(0);
        const b64 = `0b${Buffer.from(b).toString('base64')}`;
        expect(Buffer.compare(parseBinaryValue(b64)!, Buffer.from(b))).toBe(0);
      }),
    );
  });

  it('booleans are exactly Yes or No', () => {
    expect(parseBooleanValue('Yes')).toBe(true);
    expect(parseBooleanValue('No')).toBe(false);
    for (const bad of ['yes', 'no', 'YES', '1', '', 'True']) expect(parseBooleanValue(bad)).toBeUndefined();
    expect(encodeBooleanValue(true)).toBe('Yes');
    expect(encodeBooleanValue(false)).toBe('No');
  });

  it('lists split on commas and refuse empty members', () => {
    expect(parseListValue('CRC32C,None')).toEqual(['CRC32C', 'None']);
    expect(parseListValue('None')).toEqual(['None']);
    expect(parseListValue('')).toBeUndefined();
    expect(parseListValue('CRC32C,,None')).toBeUndefined();
    expect(parseListValue(',None')).toBeUndefined();
    expect(parseListValue('None,')).toBeUndefined();
  });

  it('text-value character set', () => {
    expect(isTextValue('RFC3720')).toBe(true);
    expect(isTextValue('[fe80::1]:3260')).toBe(true);
    expect(isTextValue('')).toBe(true);
    expect(isTextValue('a b')).toBe(false);
    expect(isTextValue('a,b')).toBe(false);
  });
});
