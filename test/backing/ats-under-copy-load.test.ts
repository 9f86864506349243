/**
 * ESXi's VMFS heartbeat under copy load (issue 11 point 4), over iSCSI: a
 * one-block COMPARE AND WRITE every 10 ms on one LU while 32 XCOPY streams
 * (LID1, two E4h NAA CSCDs, one 16 MiB segment) and 8 streams of 128 MiB
 * POPULATE TOKEN + WRITE USING TOKEN run on other LUs of the same target.
 * ESXi declares a volume lost after 8 s without a heartbeat; this fails if
 * any heartbeat takes above 2 s (the safety bound the issue asks for; the
 * figures themselves are test/bench/ats-latency.ts's), or if a heartbeat
 * fails, or if the copies did not run. Scaled down to stay bounded: 256 MiB
 * sources, 8 s of load after 2 s of warm-up.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startConfiguredDaemon, type ConfiguredDaemon } from '../support/daemon';
import { fillSource, runAtsLoad } from '../support/ats-load';

const MiB = 1024 * 1024;
const IQN = 'iqn.2026-11.org.xcopyd:ats-load';
const SOURCE = 256 * MiB;
const NAA_XSRC = '6001405000000000000000000000a801';
const NAA_XDST = '6001405000000000000000000000a802';


let dir: string;
let d: ConfiguredDaemon;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-ats-load-'));
  fillSource(path.join(dir, 'xsrc.img'), SOURCE, 1);
  fillSource(path.join(dir, 'osrc.img'), SOURCE, 2);
  const lun = (n: number, file: string, naa?: string) => ({ lun: n, path: path.join(dir, file), size: `${SOURCE}`, ...(naa ? { naa } : {}) });
  d = await startConfiguredDaemon(
    [{
      iqn: IQN,
      luns: [
        { lun: 0, path: path.join(dir, 'ats.img'), size: '16MiB' },
        lun(1, 'xsrc.img', NAA_XSRC), lun(2, 'xdst.img', NAA_XDST), lun(3, 'osrc.img'), lun(4, 'odst.img'),
      ],
    }],
    { limits: { maxSessions: 128, maxSessionsPerInitiator: 128, authFailureDelayMs: 10 } },
  );
}, 60000);

afterAll(async () => {
  await d?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

it('no COMPARE AND WRITE heartbeat takes 2 s while 32 XCOPY and 8 x 128 MiB WUT streams run', async () => {
  const r = await runAtsLoad(
    {
      port: d.port, iqn: IQN, blockSize: 512, atsLun: 0,
      xcopy: { srcLun: 1, dstLun: 2, srcNaa: NAA_XSRC, dstNaa: NAA_XDST, bytes: SOURCE },
      odx: { srcLun: 3, dstLun: 4, bytes: SOURCE },
    },
    { durationMs: 8000, warmupMs: 2000, xcopyStreams: 32, xcopyBytes: 16 * MiB, wutStreams: 8, wutBytes: 128 * MiB },
  );
  // printed for the record, never asserted beyond the 2 s bound
  console.log(`ATS under copy load: n=${r.ats.count} max ${r.ats.maxMs.toFixed(1)} ms p99 ${r.ats.p99Ms.toFixed(1)} ms; `
    + `${r.xcopies} XCOPY, ${r.wuts} WUT (${(r.wutBytes / MiB).toFixed(0)} MiB); load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  expect(r.atsFailures).toBe(0);
  expect(r.ats.count).toBeGreaterThan(20); // the heartbeats ran (not a rate: 8 s at one per 10 ms would be 800)
  expect(r.xcopies).toBeGreaterThan(32);
  expect(r.wutBytes).toBeGreaterThan(0);
  expect(r.ats.maxMs).toBeLessThan(2000);
}, 120000);
