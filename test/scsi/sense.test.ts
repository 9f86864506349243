import { encodeFixedSense, encodeFieldPointer, encodeSenseError, SenseError, SENSE_TABLE, decodeFixedSense, encodeDescriptorSense, senseInput } from '../../scsi/sense';

describe('fixed-format sense', () => {
  it('encodes the reference example: bad byte 2 of the CDB -> C0h 00h 02h', () => {
    const s = encodeSenseError(new SenseError('INVALID_FIELD_IN_CDB', { field: { byte: 2, cd: true } }));
    expect(s.length).toBe(18);
    expect(s[0]).toBe(0x70);
    expect(s[2]).toBe(0x05);
    expect(s[7]).toBe(10);
    expect(s[12]).toBe(0x24);
    expect(s[13]).toBe(0x00);
    expect([...s.subarray(15, 18)]).toEqual([0xc0, 0x00, 0x02]);
  });

  it('sets BPV and the bit pointer', () => {
    expect([...encodeFieldPointer({ byte: 9, bit: 5, cd: true })]).toEqual([0xcd, 0x00, 0x09]);
    expect([...encodeFieldPointer({ byte: 300, bit: 0, cd: false })]).toEqual([0x88, 0x01, 0x2c]);
  });

  it('sets VALID only when INFORMATION fits 32 bits', () => {
    const ok = encodeFixedSense({ key: 0xe, asc: 0x1d, ascq: 0, information: 0x1234n });
    expect(ok[0]).toBe(0xf0);
    expect(ok.readUInt32BE(3)).toBe(0x1234);
    const big = encodeFixedSense({ key: 5, asc: 0x21, ascq: 0, information: 1n << 40n });
    expect(big[0]).toBe(0x70);
    expect(big.readUInt32BE(3)).toBe(0);
  });

  it('maps every reason to a sane key/ASC/ASCQ; UA reasons carry key 6', () => {
    for (const [reason, [key, asc, ascq]] of Object.entries(SENSE_TABLE)) {
      expect(key).toBeGreaterThanOrEqual(0);
      expect(key).toBeLessThanOrEqual(0xf);
      if (reason.startsWith('UA_')) expect(key).toBe(6);
      // ASC 00h only for NO SENSE, OPERATION IN PROGRESS (00/16) and a bare COPY ABORTED (A/00/00).
      if (reason !== 'NO_SENSE' && reason !== 'COPY_ABORTED') expect(asc !== 0 || ascq !== 0).toBe(true);
    }
    const d = decodeFixedSense(encodeSenseError(new SenseError('SPACE_ALLOCATION_FAILED_WRITE_PROTECT')));
    expect([d.key, d.asc, d.ascq]).toEqual([7, 0x27, 0x07]);
  });

  it('encodes descriptor format with information and SKS descriptors', () => {
    const b = encodeDescriptorSense(senseInput(new SenseError('INVALID_FIELD_IN_CDB', { field: { byte: 1, bit: 4, cd: true }, information: 7 })));
    expect(b[0]).toBe(0x72);
    expect([b[1], b[2], b[3]]).toEqual([5, 0x24, 0]);
    expect(b[7]).toBe(b.length - 8);
    expect(b[8]).toBe(0x00);
    expect(b.readBigUInt64BE(12)).toBe(7n);
    expect(b[20]).toBe(0x02);
    expect([...b.subarray(24, 27)]).toEqual([0xcc, 0x00, 0x01]);
  });
});
