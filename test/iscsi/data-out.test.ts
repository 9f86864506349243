/**
 * DataOutSequencer (iscsi/data-out.ts) on its own: the verdict of each
 * Data-Out PDU (RFC 7143 §4.2.3.4 unsolicited data, §11.7/§11.8 R2T
 * sequences, DataPDUInOrder=Yes), and the R2Ts it asks the connection to send.
 */
import { DataOutSequencer, type DataOutSetup } from '../../iscsi/data-out';

const NO_TAG = 0xffffffff;
const KiB = 1024;

function sequencer(o: Partial<DataOutSetup> = {}): DataOutSequencer {
  return new DataOutSequencer({
    expectedDataTransferLength: 64 * KiB,
    immediateData: Buffer.alloc(0),
    final: true,
    initialR2T: true,
    firstBurstLength: 16 * KiB,
    maxBurstLength: 16 * KiB,
    maxOutstandingR2T: 16,
    ...o,
  });
}

const bytes = (n: number, fill: number): Buffer => Buffer.alloc(n, fill);

describe('DataOutSequencer', () => {
  it('immediate data alone: complete at once, no R2T', () => {
    const s = sequencer({ expectedDataTransferLength: 4 * KiB, immediateData: bytes(4 * KiB, 1) });
    const got = s.want(4 * KiB);
    expect(got).not.toBeNull();
    expect(got!.equals(bytes(4 * KiB, 1))).toBe(true);
    expect(s.needsR2t()).toBe(false);
  });

  it('R2T sequences: offsets, lengths, R2TSN; MaxOutstandingR2T bounds what is open', () => {
    const s = sequencer({ maxOutstandingR2T: 2 });
    expect(s.want(64 * KiB)).toBeNull();
    const r: Array<{ r2tSN: number; bufferOffset: number; desiredLength: number }> = [];
    let ttt = 100;
    while (s.needsR2t()) r.push(s.openR2t(ttt++));
    expect(r).toEqual([
      { r2tSN: 0, bufferOffset: 0, desiredLength: 16 * KiB },
      { r2tSN: 1, bufferOffset: 16 * KiB, desiredLength: 16 * KiB },
    ]);
    expect(s.accept(100, 0, 0, false, bytes(8 * KiB, 2))).toBe('accepted');
    expect(s.accept(100, 1, 8 * KiB, true, bytes(8 * KiB, 2))).toBe('burst-done');
    expect(s.needsR2t()).toBe(true);
    expect(s.openR2t(ttt++)).toEqual({ r2tSN: 2, bufferOffset: 32 * KiB, desiredLength: 16 * KiB });
    expect([...s.openTtts()]).toEqual([101, 102]);
  });

  it('the whole write: every sequence answered, the bytes in place', () => {
    const s = sequencer({ expectedDataTransferLength: 32 * KiB });
    expect(s.want(32 * KiB)).toBeNull();
    const a = s.openR2t(1);
    const b = s.openR2t(2);
    expect(s.accept(2, 0, b.bufferOffset, true, bytes(16 * KiB, 4))).toBe('burst-done');
    expect(s.complete()).toBeNull();
    expect(s.accept(1, 0, a.bufferOffset, true, bytes(16 * KiB, 3))).toBe('burst-done');
    const got = s.complete()!;
    expect(got.length).toBe(32 * KiB);
    expect(got[0]).toBe(3);
    expect(got[32 * KiB - 1]).toBe(4);
  });

  it('bad DataSN, bad offset and overrun within an R2T: out-of-sequence', () => {
    for (const [dataSN, offset, len] of [[1, 0, 512], [0, 512, 512], [0, 0, 16 * KiB + 512]]) {
      const s = sequencer();
      s.want(64 * KiB);
      s.openR2t(7);
      expect(s.accept(7, dataSN, offset, false, bytes(len, 0))).toBe('out-of-sequence');
    }
  });

  it('a second PDU with a stale DataSN is out of sequence', () => {
    const s = sequencer();
    s.want(64 * KiB);
    s.openR2t(7);
    expect(s.accept(7, 0, 0, false, bytes(4 * KiB, 0))).toBe('accepted');
    expect(s.accept(7, 0, 4 * KiB, false, bytes(4 * KiB, 0))).toBe('out-of-sequence');
  });

  it('an unknown TTT, and one whose sequence already ended', () => {
    const s = sequencer();
    s.want(64 * KiB);
    s.openR2t(7);
    expect(s.accept(8, 0, 0, true, bytes(512, 0))).toBe('unknown-ttt');
    expect(s.accept(7, 0, 0, true, bytes(16 * KiB, 0))).toBe('burst-done');
    expect(s.accept(7, 1, 16 * KiB, true, bytes(512, 0))).toBe('unknown-ttt');
  });

  it('F bit: missing at the end of a sequence, or set before it is complete', () => {
    const a = sequencer();
    a.want(64 * KiB);
    a.openR2t(7);
    expect(a.accept(7, 0, 0, false, bytes(16 * KiB, 0))).toBe('missing-final');
    const b = sequencer();
    b.want(64 * KiB);
    b.openR2t(7);
    expect(b.accept(7, 0, 0, true, bytes(8 * KiB, 0))).toBe('early-final');
  });

  it('data nobody solicited: before the command runs, and beyond what the core asked for (never more than EDTL)', () => {
    const s = sequencer({ expectedDataTransferLength: 4 * KiB });
    expect(s.accept(NO_TAG, 0, 0, true, bytes(512, 0))).toBe('outside-solicited'); // InitialR2T=Yes, no buffer yet
    s.want(4 * KiB);
    expect(s.accept(NO_TAG, 0, 4 * KiB, true, bytes(512, 0))).toBe('outside-solicited');
  });

  it('unsolicited burst (InitialR2T=No): in order up to FirstBurstLength, then R2Ts for the rest', () => {
    const s = sequencer({ initialR2T: false, final: false, immediateData: bytes(4 * KiB, 1) });
    expect(s.want(64 * KiB)).toBeNull();
    expect(s.needsR2t()).toBe(false); // R2Ts follow the unsolicited burst
    expect(s.accept(NO_TAG, 0, 4 * KiB, false, bytes(4 * KiB, 2))).toBe('accepted');
    expect(s.accept(NO_TAG, 0, 8 * KiB, false, bytes(4 * KiB, 2))).toBe('unexpected-unsolicited'); // DataSN 0 again
    expect(s.accept(NO_TAG, 1, 12 * KiB, false, bytes(4 * KiB, 2))).toBe('unexpected-unsolicited'); // a hole at 8 KiB
    expect(s.accept(NO_TAG, 1, 8 * KiB, false, bytes(12 * KiB, 2))).toBe('unexpected-unsolicited'); // past FirstBurstLength
    expect(s.accept(NO_TAG, 1, 8 * KiB, true, bytes(8 * KiB, 2))).toBe('burst-done');
    expect(s.accept(NO_TAG, 2, 16 * KiB, true, bytes(512, 2))).toBe('unexpected-unsolicited'); // the burst is over
    expect(s.openR2t(9)).toEqual({ r2tSN: 0, bufferOffset: 16 * KiB, desiredLength: 16 * KiB }); // MaxBurstLength
  });

  it('an unsolicited burst the initiator ends early (F) is completed by R2T from where it stopped', () => {
    const s = sequencer({ initialR2T: false, final: false, maxBurstLength: 256 * KiB });
    s.want(64 * KiB);
    expect(s.accept(NO_TAG, 0, 0, true, bytes(4 * KiB, 2))).toBe('burst-done');
    expect(s.openR2t(9)).toEqual({ r2tSN: 0, bufferOffset: 4 * KiB, desiredLength: 60 * KiB });
  });

  it('F on the command: no unsolicited Data-Out may follow', () => {
    const s = sequencer({ initialR2T: false, final: true, expectedDataTransferLength: 8 * KiB });
    s.want(8 * KiB);
    expect(s.accept(NO_TAG, 0, 0, true, bytes(4 * KiB, 0))).toBe('unexpected-unsolicited');
  });

  it('the core asks for less than EDTL: only that is solicited, the buffer only that large', () => {
    const s = sequencer({ expectedDataTransferLength: 1024 * KiB, maxBurstLength: 256 * KiB });
    expect(s.want(512)).toBeNull();
    expect(s.openR2t(3)).toEqual({ r2tSN: 0, bufferOffset: 0, desiredLength: 512 });
    expect(s.needsR2t()).toBe(false);
    expect(s.accept(3, 0, 0, true, bytes(512, 5))).toBe('burst-done');
    expect(s.complete()!.length).toBe(512);
  });

  it('release(): the buffer and open TTTs go', () => {
    const s = sequencer();
    s.want(64 * KiB);
    s.openR2t(7);
    s.release();
    expect([...s.openTtts()]).toEqual([]);
    expect(s.accept(7, 0, 0, true, bytes(512, 0))).toBe('outside-solicited');
  });
});
