/**
 * Access control across targets (issue 4, Access): a CSCD resolves only to an LU the
 * issuing I_T nexus may access. An initiator allowed on target A only cannot copy to or
 * from target B's LUN, even by naming its NAA; the daemon's resolver (src/copy-scope.ts)
 * checks both the target's ACL and the device's lunsFor(nexus).
 */
import { ScsiStatus, type ItNexus } from '../../../scsi/types';
import { ScsiDevice } from '../../../scsi/scsi-device';
import { buildCopyScope, type ScopedTarget } from '../../../src/copy-scope';
import { TargetAccess } from '../../../src/access';
import { MemoryStore, silentLogger, task, senseOf } from '../helpers';
import { BS, b2b, e4, identityWith, lid1, pattern, xcopyCdb } from './helpers';

const A = 'iqn.2026-11.org.xcopyd:a';
const B = 'iqn.2026-11.org.xcopyd:b';
const ALICE = 'iqn.2026-11.org.example:alice';
const BOB = 'iqn.2026-11.org.example:bob';

function nexusOn(target: string, initiator: string): ItNexus {
  return {
    key: `${initiator},i,0x000000000001|${target}`,
    initiatorName: initiator,
    initiatorPortName: `${initiator},i,0x000000000001`,
    relativeTargetPort: 1,
    targetPortName: `${target},t,0x0001`,
  };
}

function daemonLike(o: { bAllowed?: string[]; aLunFilter?: (n: ItNexus, lun: number) => boolean }) {
  const scoped: ScopedTarget[] = [];
  const copyScope = buildCopyScope(scoped);
  const storesA = [new MemoryStore(4096 * BS), new MemoryStore(4096 * BS)];
  const storesB = [new MemoryStore(4096 * BS)];
  const devA = new ScsiDevice({ logger: silentLogger, luns: storesA.map((store, i) => ({ lun: i, store, identity: identityWith(i) })), copyScope, lunFilter: o.aLunFilter });
  const devB = new ScsiDevice({ logger: silentLogger, luns: [{ lun: 0, store: storesB[0], identity: identityWith(0xb0) }], copyScope });
  const acl = (iqn: string, names?: string[]) => () => new TargetAccess(iqn, undefined, names?.map((initiator) => ({ initiator })));
  scoped.push({ iqn: A, access: acl(A, [ALICE, BOB]), device: devA }, { iqn: B, access: acl(B, o.bAllowed), device: devB });
  return { storesA, storesB, devA, devB };
}

const naaA0 = identityWith(0).naa;
const naaA1 = identityWith(1).naa;
const naaB0 = identityWith(0xb0).naa;

async function xcopy(dev: ScsiDevice, n: ItNexus, params: Buffer) {
  return dev.execute(task(xcopyCdb(0, params.length), { dataOut: params, nexus: n }));
}

describe('copy scope: ACLs across two targets', () => {
  it('an initiator allowed on target A only cannot copy to or from B\'s LUN by its NAA (A/0D/02); B is untouched', async () => {
    const { storesA, storesB, devA } = daemonLike({ bAllowed: [BOB] });
    pattern(8 * BS, 1).copy(storesA[0].data, 0);
    storesB[0].data.fill(0x42, 0, 16 * BS);
    const alice = nexusOn(A, ALICE);
    const to = senseOf(await xcopy(devA, alice, lid1([e4(naaA0), e4(naaB0)], [b2b(0, 1, 8, 0, 0)])));
    expect([to.key, to.asc, to.ascq, to.fieldPointer]).toEqual([0xa, 0x0d, 0x02, 48]);
    expect(storesB[0].data.subarray(0, 16 * BS).every((x) => x === 0x42)).toBe(true);
    const from = senseOf(await xcopy(devA, alice, lid1([e4(naaB0), e4(naaA1)], [b2b(0, 1, 8, 0, 0)])));
    expect([from.key, from.asc, from.ascq, from.fieldPointer]).toEqual([0xa, 0x0d, 0x02, 16]);
    expect(storesA[1].data.subarray(0, 8 * BS).every((x) => x === 0)).toBe(true);
  });

  it('an initiator that B\'s ACL names explicitly may copy between A and B', async () => {
    const { storesA, storesB, devA } = daemonLike({ bAllowed: [BOB] });
    const data = pattern(8 * BS, 2);
    data.copy(storesA[0].data, 0);
    const r = await xcopy(devA, nexusOn(A, BOB), lid1([e4(naaA0), e4(naaB0)], [b2b(0, 1, 8, 0, 0)]));
    expect(r.status).toBe(ScsiStatus.GOOD);
    expect(storesB[0].data.subarray(0, 8 * BS).equals(data)).toBe(true);
  });

  it('a target open to any initiator (no allowedInitiators) is still not reachable from another target\'s session', async () => {
    const { devA } = daemonLike({});
    const s = senseOf(await xcopy(devA, nexusOn(A, ALICE), lid1([e4(naaA0), e4(naaB0)], [b2b(0, 1, 8, 0, 0)])));
    expect([s.key, s.asc, s.ascq]).toEqual([0xa, 0x0d, 0x02]);
  });

  it('LUN masking of the own target applies too (lunsFor)', async () => {
    const { devA } = daemonLike({ aLunFilter: (n, lun) => !(n.initiatorName === ALICE && lun === 1) });
    const s = senseOf(await xcopy(devA, nexusOn(A, ALICE), lid1([e4(naaA0), e4(naaA1)], [b2b(0, 1, 8, 0, 0)])));
    expect([s.key, s.asc, s.ascq]).toEqual([0xa, 0x0d, 0x02]);
    expect((await xcopy(devA, nexusOn(A, BOB), lid1([e4(naaA0), e4(naaA1)], [b2b(0, 1, 8, 0, 0)]))).status).toBe(ScsiStatus.GOOD);
  });
});
