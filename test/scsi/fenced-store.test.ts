/**
 * A store whose node was fenced (RBD: the survivor broke this node's lock and
 * Ceph blocklisted its client; every call then fails with ESHUTDOWN) answers
 * NOT READY, LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE
 * (2/04/0C, SPC-5 5.16.2.6): the ALUA state of a node that is gone, so a
 * multipath initiator (Linux scsi_dh_alua, Windows MPIO, ESXi SATP_ALUA) fails
 * the path over to another node instead of reporting an I/O error.
 */
import { ScsiStatus } from '../../scsi/types';
import { makeDevice, task, senseOf, MemoryStore } from './helpers';

const BS = 512;

describe('a fenced store (ESHUTDOWN)', () => {
  it('WRITE and READ -> 2/04/0C', async () => {
    const store = new MemoryStore(64 * BS);
    const device = makeDevice([store]);
    store.failNext = 'ESHUTDOWN';
    const w = await device.execute(task([0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], { dataOut: Buffer.alloc(BS, 1) }));
    expect(w.status).toBe(ScsiStatus.CHECK_CONDITION);
    let s = senseOf(w);
    expect([s.key, s.asc, s.ascq]).toEqual([2, 0x04, 0x0c]);
    store.failNext = 'ESHUTDOWN';
    const r = await device.execute(task([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], { edtl: BS }));
    s = senseOf(r);
    expect([s.key, s.asc, s.ascq]).toEqual([2, 0x04, 0x0c]);
  });
});
