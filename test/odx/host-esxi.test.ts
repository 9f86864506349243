/**
 * Issue 11, ESXi's XCOPY pattern (VAAI "Full Copy"/Clone), over iSCSI: EXTENDED COPY(LID1)
 * (83h/00h) with two E4h Identification CSCD descriptors naming the LUs by the NAA designator
 * copied verbatim from VPD 83h, and one 02h block -> block segment of 4 MiB (ESXi's default
 * MaxHWTransferSize) up to 16 MiB (its largest), several in flight on one session as ESXi
 * queues a clone's chunks; between LUNs (datastore to datastore) and within one LUN (a clone
 * inside a datastore, both CSCDs naming the same LU). Every command must succeed (a refusal is
 * a silent fallback to a host copy) and the destinations must hold the sources' bytes.
 * Which LIST ID USAGE ESXi sets is not pinned down here: both 11b (no list identifier) and
 * 00b with identifiers from an 8-bit counter are sent; 10b with one reused identifier is
 * QEMU's pattern (host-qemu-list-id.test.ts).
 *
 * Also issue 11 point 6 as ESXi reads it: its `xcopy-use-array-values` claim rule takes the
 * array's MAXIMUM SEGMENT LENGTH (RECEIVE COPY OPERATING PARAMETERS) as the XCOPY size, which
 * must equal VPD 8Fh descriptor 8001h's and not be 0 (LIO reports 256 MiB).
 */
import path from 'node:path';
import type { TestDaemon } from '../support/daemon';
import { fastPattern, naaOf, readFileAt, writeFileAt } from '../support/host-xcopy';
import { pipelined, type PipelinedCommand } from '../support/pipelined';
import { cdb } from '../support/initiator';
import { b2b, e4, lid1, rcrCdb, xcopyCdb } from '../scsi/copy/helpers';
import { BS, expectGood, odxDaemon, readBlocks, session, type TestInitiator } from './odx';

const MiB = 1024 * 1024;
const LUN_SIZE = 512 * MiB;
/** Commands ESXi keeps in flight per clone here (its queue depth per device is larger still). */
const IN_FLIGHT = 8;

let d: TestDaemon;
let c: TestInitiator;
let naa: [Buffer, Buffer];

beforeAll(async () => {
  d = await odxDaemon({}, `${LUN_SIZE / MiB}MiB`);
  c = await session(d.port);
  naa = [await naaOf(c, 0), await naaOf(c, 1)];
}, 60_000);
afterAll(async () => {
  c.close();
  await d.stop();
});

const lunFile = (lun: number) => path.join(d.dataDir, `lun${lun}.img`);

interface Clone {
  srcLun: number;
  dstLun: number;
  srcLba: number;
  dstLba: number;
  blocks: number;
}

/** ESXi's LID1: CSCD 0 = source LU, CSCD 1 = destination LU (each by NAA, 512-byte blocks), one 02h segment. */
function esxiXcopy(x: Clone, listId: number, usage: number): PipelinedCommand {
  const params = lid1([e4(naa[x.srcLun]), e4(naa[x.dstLun])], [b2b(0, 1, x.blocks, x.srcLba, x.dstLba)], { listId, usage });
  return { lun: x.srcLun, cdb: xcopyCdb(0, params.length), dataOut: params };
}

/** Run `clones` IN_FLIGHT at a time; sources are written into the backing files first, destinations read back from them. */
async function runClones(clones: Clone[], usage: number, listIds: () => number, seed: number): Promise<void> {
  const sources = clones.map((x, i) => {
    const data = fastPattern(x.blocks * BS, seed + i);
    writeFileAt(lunFile(x.srcLun), x.srcLba * BS, data);
    return data;
  });
  for (let at = 0; at < clones.length; at += IN_FLIGHT) {
    const batch = clones.slice(at, at + IN_FLIGHT);
    const results = await pipelined(c, batch.map((x) => esxiXcopy(x, listIds(), usage)));
    results.forEach((r, k) => expectGood(r, `EXTENDED COPY(LID1) ${at + k} (usage ${usage.toString(2).padStart(2, '0')}b, ${batch[k].blocks * BS / MiB} MiB)`));
  }
  clones.forEach((x, i) => {
    const got = readFileAt(lunFile(x.dstLun), x.dstLba * BS, x.blocks * BS);
    if (!got.equals(sources[i])) throw new Error(`clone ${i} (LUN ${x.srcLun} -> ${x.dstLun}, ${x.blocks} blocks): destination differs`);
  });
}

/** `n` clones of `sizes` (cycled) packed one after another from `base`, source and destination regions apart. */
function layout(n: number, sizesMiB: number[], srcLun: number, dstLun: number, base: number, dstBase: number): Clone[] {
  const out: Clone[] = [];
  let src = base;
  let dst = dstBase;
  for (let i = 0; i < n; i++) {
    const blocks = (sizesMiB[i % sizesMiB.length] * MiB) / BS;
    out.push({ srcLun, dstLun, srcLba: src, dstLba: dst, blocks });
    src += blocks;
    dst += blocks;
  }
  return out;
}

describe("ESXi's XCOPY pattern: LID1, two E4h NAA CSCDs, one 02h segment of 4..16 MiB, several in flight", () => {
  jest.setTimeout(180_000);
  const MiBlocks = MiB / BS;

  it.each([
    ['11b, no list identifier', 0b11],
    ['00b, list identifiers from an 8-bit counter', 0b00],
  ])('LIST ID USAGE %s: datastore to datastore (LUN 0 -> LUN 1), 8 x 4 MiB then 8 of 4..16 MiB, 8 in flight; all GOOD, bytes right', async (_label, usage) => {
    let counter = 0;
    const ids = () => (usage === 0b11 ? 0 : counter++ & 0xff);
    await runClones(layout(8, [4], 0, 1, 0, 0), usage, ids, 1);
    await runClones(layout(8, [4, 16, 8, 12], 0, 1, 64 * MiBlocks, 64 * MiBlocks), usage, ids, 3);
  });

  it.each([
    ['11b', 0b11],
    ['00b', 0b00],
  ])('LIST ID USAGE %s: a clone within one datastore (both CSCDs name LUN 0), 8 of 16 and 4 MiB in flight; all GOOD, bytes right', async (_label, usage) => {
    let counter = 0x80;
    const ids = () => (usage === 0b11 ? 0 : counter++ & 0xff);
    await runClones(layout(8, [16, 4], 0, 0, 0, 256 * MiBlocks), usage, ids, 4);
    // and one destination range checked over the wire too
    const x = layout(1, [16, 4], 0, 0, 0, 256 * MiBlocks)[0];
    expect((await readBlocks(c, 0, x.dstLba, 64)).equals(readFileAt(lunFile(0), x.srcLba * BS, 64 * BS))).toBe(true);
  });
});

describe("MAXIMUM SEGMENT LENGTH, as ESXi's xcopy-use-array-values rule reads it (issue 11 point 6)", () => {
  async function operatingParametersMaxSegmentLength(): Promise<number> {
    const r = await c.command(0, rcrCdb(0x03, 0, 1024), { read: 1024 });
    expectGood(r, 'RECEIVE COPY OPERATING PARAMETERS');
    return r.data.readUInt32BE(16); // SPC-5 6.20.2: bytes 16-19
  }
  async function vpd8001MaxSegmentLength(): Promise<number> {
    const r = await c.command(0, cdb.inquiry(4096, true, 0x8f), { read: 4096 });
    expectGood(r, 'INQUIRY VPD 8Fh');
    const end = 4 + r.data.readUInt16BE(2);
    for (let off = 4; off + 4 <= end; off += 4 + r.data.readUInt16BE(off + 2)) {
      // 8001h General Copy Operations: 4 TOTAL CONCURRENT COPIES, 8 MAXIMUM IDENTIFIED CONCURRENT COPIES, 12 MAXIMUM SEGMENT LENGTH
      if (r.data.readUInt16BE(off) === 0x8001) return r.data.readUInt32BE(off + 12);
    }
    throw new Error('no 8001h descriptor in VPD 8Fh');
  }

  it('RECEIVE COPY OPERATING PARAMETERS and VPD 8Fh 8001h report the same MAXIMUM SEGMENT LENGTH', async () => {
    expect(await operatingParametersMaxSegmentLength()).toBe(await vpd8001MaxSegmentLength());
  });

  // Issue 11 point 6: both reported 0 ("no limit") before, which ESXi's rule cannot use as a transfer size.
  it('MAXIMUM SEGMENT LENGTH is not 0, and a segment of that length (or the 02h maximum, if smaller) copies', async () => {
    const max = await operatingParametersMaxSegmentLength();
    expect(max).toBeGreaterThan(0);
    expect(max % BS).toBe(0);
    const blocks = Math.min(max / BS, 0xffff, (64 * MiB) / BS);
    await runClones([{ srcLun: 0, dstLun: 1, srcLba: 0, dstLba: 300 * 2048, blocks }], 0b11, () => 0, 9);
  });
});
