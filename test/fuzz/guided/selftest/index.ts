/**
 * Targets that check the fuzzer, not the project (guided.test.ts):
 *
 *  - selftest-magic fails only for inputs starting with "FUZZ", tested one
 *    byte at a time: random inputs hit it once in 2^32, a coverage-guided
 *    fuzzer a few thousand inputs in, as each matching byte reaches a new
 *    block and joins the corpus;
 *  - selftest-hang spins forever on inputs starting with "H": only the
 *    runner's watchdog can end that, and it must report the input.
 */
import type { FuzzTarget } from '../target';

const DIR = ['test/fuzz/guided/selftest'];

export const magicTarget: FuzzTarget = {
  name: 'selftest-magic',
  coverage: DIR,
  maxLen: 64,
  seeds: () => [Buffer.from('hello')],
  run(b) {
    if (b[0] === 0x46) {
      if (b[1] === 0x55) {
        if (b[2] === 0x5a) {
          if (b[3] === 0x5a) return 'magic found';
        }
      }
    }
    return null;
  },
};

export const hangTarget: FuzzTarget = {
  name: 'selftest-hang',
  coverage: DIR,
  maxLen: 16,
  seeds: () => [Buffer.from('a')],
  run(b) {
    if (b[0] === 0x48) for (;;) Math.random();
    return null;
  },
};
