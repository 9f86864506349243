/**
 * The harness's disk housekeeping: a suite that passed loses its LUN files and other bulky
 * data when it ends, and keeps its logs (a full interop run left ~18 GB in
 * /tmp/xcopyd-interop). A failed suite keeps everything: that half is checked by hand
 * (a failing test file cannot be committed), see the report of the commit.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cleanUpSuiteData, describeIf, removeWhenSuitePasses, requireTarget, startTarget, suiteFailed, writeRandomFile } from './harness';

const xcopydOnly = (process.env.INTEROP_TARGET ?? 'xcopyd') !== 'tgt';

describeIf(xcopydOnly && requireTarget())('harness housekeeping', () => {
  it('reads this file\'s pass/fail state from jest', () => {
    expect(suiteFailed()).toBe(false);
  });

  it('removes the data directory, registered paths and big files of a passed suite; keeps the logs; stops the daemon', async () => {
    const t = await startTarget({ name: 'housekeeping' });
    const input = path.join(t.runDir, 'input.bin');
    writeRandomFile(input, 2 * 1024 * 1024);
    const extra = path.join(t.runDir, 'scratch');
    fs.mkdirSync(extra);
    fs.writeFileSync(path.join(extra, 'small'), 'x');
    removeWhenSuitePasses(extra);
    fs.writeFileSync(path.join(t.runDir, 'tool.txt'), 'kept\n');
    expect(fs.existsSync(path.join(t.dataDir!, 'lun0.img'))).toBe(true);

    const r = await cleanUpSuiteData();
    expect(t.alive()).toBe(false);
    expect(r?.removed.sort()).toEqual([t.dataDir!, extra, input].sort());
    expect(fs.existsSync(t.dataDir!)).toBe(false);
    expect(fs.existsSync(t.logFile)).toBe(true);
    expect(fs.readFileSync(path.join(t.runDir, 'tool.txt'), 'utf8')).toBe('kept\n');
  }, 60_000);
});
