/** Every guided target, in the order the CI run visits them. */
import type { FuzzTarget } from './target';
import { hangTarget, magicTarget } from './selftest/index';
import { framerTarget, loginTarget, textKeysTarget } from './targets-iscsi';
import { cdbTarget, extendedCopyTarget, modeSelectTarget, persistentReserveOutTarget, populateTokenTarget, writeUsingTokenTarget } from './targets-scsi';

export const TARGETS: readonly FuzzTarget[] = [
  framerTarget,
  textKeysTarget,
  loginTarget,
  cdbTarget,
  extendedCopyTarget,
  populateTokenTarget,
  writeUsingTokenTarget,
  modeSelectTarget,
  persistentReserveOutTarget,
];

export const TARGET_NAMES = TARGETS.map((t) => t.name);

/** Targets that check the fuzzer itself (guided.test.ts), not the project. */
export const SELFTEST_TARGETS: readonly FuzzTarget[] = [magicTarget, hangTarget];
