import fc from 'fast-check';
import { DIGEST_LENGTH, crc32c, digestBytes, digestMatches } from '../../iscsi/digest';

const range = (from: number, to: number): Buffer => {
  const step = from <= to ? 1 : -1;
  const out: number[] = [];
  for (let v = from; v !== to + step; v += step) out.push(v);
  return Buffer.from(out);
};

/**
 * RFC 3720 Appendix B.4 (kept in RFC 7143 by reference): CRC32C examples.
 * The RFC prints the CRC as it goes on the wire, least significant byte first.
 */
const RFC_VECTORS: { name: string; data: Buffer; crc: number; wire: string }[] = [
  { name: '32 bytes of zeros', data: Buffer.alloc(32, 0x00), crc: 0x8a9136aa, wire: 'aa36918a' },
  { name: '32 bytes of ones', data: Buffer.alloc(32, 0xff), crc: 0x62a8ab43, wire: '43aba862' },
  { name: '32 bytes incrementing 00..1F', data: range(0x00, 0x1f), crc: 0x46dd794e, wire: '4e79dd46' },
  { name: '32 bytes decrementing 1F..00', data: range(0x1f, 0x00), crc: 0x113fdb5c, wire: '5cdb3f11' },
  {
    name: 'iSCSI SCSI Read(10) command PDU',
    data: Buffer.from(
      '01c00000' +
        '00000000' +
        '00000000' +
        '00000000' +
        '14000000' +
        '00000400' +
        '00000014' +
        '00000018' +
        '28000000' +
        '00000000' +
        '02000000' +
        '00000000',
      'hex',
    ),
    crc: 0xd9963a56,
    wire: '563a96d9',
  },
  // The CRC-32C catalogue "check" value.
  { name: '"123456789"', data: Buffer.from('123456789', 'ascii'), crc: 0xe3069283, wire: '839206e3' },
];

describe('crc32c', () => {
  it.each(RFC_VECTORS)('RFC vector: $name', ({ data, crc, wire }) => {
    expect(crc32c(data)).toBe(crc);
    expect(digestBytes(crc32c(data)).toString('hex')).toBe(wire);
    const onWire = Buffer.concat([data, Buffer.from(wire, 'hex')]);
    expect(digestMatches(onWire, data.length, crc32c(data))).toBe(true);
  });

  it('the Read(10) PDU vector is a 48-byte BHS', () => {
    expect(RFC_VECTORS[4].data.length).toBe(48);
  });

  it('is an unsigned 32-bit number', () => {
    for (const v of RFC_VECTORS) {
      const c = crc32c(v.data);
      expect(Number.isInteger(c)).toBe(true);
      expect(c).toBeGreaterThanOrEqual(0);
      expect(c).toBeLessThanOrEqual(0xffffffff);
    }
  });

  it('of no bytes is 0', () => {
    expect(crc32c(Buffer.alloc(0))).toBe(0);
  });

  it('chained over two buffers equals the CRC of their concatenation (every split of a vector)', () => {
    const data = RFC_VECTORS[4].data;
    for (let i = 0; i <= data.length; i++) {
      expect(crc32c(data.subarray(0, i), data.subarray(i))).toBe(0xd9963a56);
    }
  });

  it('chained over many buffers equals the CRC of their concatenation (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 8 }), (parts) => {
        const bufs = parts.map((p) => Buffer.from(p));
        const [first, ...rest] = bufs;
        expect(crc32c(first, ...rest)).toBe(crc32c(Buffer.concat(bufs)));
      }),
    );
  });

  it('works on views that do not start at offset 0 of their ArrayBuffer', () => {
    const big = Buffer.alloc(100, 0xee);
    RFC_VECTORS[2].data.copy(big, 37);
    expect(crc32c(big.subarray(37, 69))).toBe(0x46dd794e);
  });
});

describe('digestBytes / digestMatches', () => {
  it('writes the digest least significant byte first (RFC 7143 §11.1.4 via RFC 3720 B.4)', () => {
    expect(DIGEST_LENGTH).toBe(4);
    expect([...digestBytes(0x8a9136aa)]).toEqual([0xaa, 0x36, 0x91, 0x8a]);
  });

  it('accepts a digest at any offset and rejects any single flipped bit', () => {
    const wire = Buffer.from('00112233aa36918a44', 'hex');
    expect(digestMatches(wire, 4, 0x8a9136aa)).toBe(true);
    for (let bit = 0; bit < 32; bit++) {
      const bad = Buffer.from(wire);
      bad[4 + (bit >> 3)] ^= 1 << (bit & 7);
      expect(digestMatches(bad, 4, 0x8a9136aa)).toBe(false);
    }
  });

  it('a big-endian digest does not match (tgt and the Linux initiator send little-endian)', () => {
    const be = Buffer.alloc(4);
    be.writeUInt32BE(0x8a9136aa, 0);
    expect(digestMatches(be, 0, 0x8a9136aa)).toBe(false);
  });

  it('round-trips any 32-bit value (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (crc) => {
        expect(digestMatches(digestBytes(crc), 0, crc)).toBe(true);
        // Signed inputs are normalised too.
        expect(digestMatches(digestBytes(crc | 0), 0, crc | 0)).toBe(true);
      }),
    );
  });
});
