/**
 * Block coverage of a whole jest test file, for comparing the fast-check
 * suites with the guided fuzzer (compare.ts). Not part of `npm test`; use:
 *
 *   XCOPYD_COV_OUT=/tmp/cov npx jest test/fuzz/cdb.test.ts \
 *     --setupFilesAfterEnv ./test/fuzz/guided/measure-setup.ts
 *
 * Coverage starts once the test file has loaded the project and is read
 * once after its last test: what of iscsi/, scsi/ and src/ ran (covered
 * intervals and V8's block boundaries, BlockCoverage.portable), written to
 * $XCOPYD_COV_OUT/<test file>.json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BlockCoverage } from './coverage';

const out = process.env.XCOPYD_COV_OUT;
if (out) {
  const cov = new BlockCoverage();
  let t0 = 0;
  // After the test file's imports: code that runs at module load is not counted (the guided
  // fuzzer's worker loads its modules before it starts coverage too).
  beforeAll(() => {
    cov.start();
    t0 = Date.now();
  });
  afterAll(() => {
    cov.take();
    const coverage = cov.portable();
    cov.stop();
    const name = path.basename(expect.getState().testPath ?? 'unknown');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(path.join(out, `${name}.json`), JSON.stringify({ ms: Date.now() - t0, coverage }));
  });
}
