/**
 * The state seam (scsi/state/lu-state.ts): a LuState that works as a cluster
 * store would - each PR OUT runs on a copy of the committed reservations and
 * is committed whole, its unit attentions delivered after the commit - slots
 * in through LogicalUnitOptions.state, and the handlers and the core work
 * unchanged on top of it.
 */
import type { ItNexus } from '../../scsi/types';
import { ScsiStatus } from '../../scsi/types';
import { ScsiDevice } from '../../scsi/scsi-device';
import { Reservations, type Registration } from '../../scsi/reservations';
import type { UnitAttentionReason } from '../../scsi/sense';
import type { LuState, LuStateInit } from '../../scsi/state/lu-state';
import { LocalLuState } from '../../scsi/state/local-lu-state';
import { cdbOf, identity, MemoryStore, nexus, senseOf, silentLogger, task } from './helpers';

/** Copy, change, commit: what a compare-and-swap store does with one PR OUT. */
class TransactionalLuState implements LuState {
  private readonly local: LocalLuState;
  private committed: Reservations;
  commits = 0;

  constructor(init: LuStateInit) {
    this.local = new LocalLuState(init);
    this.committed = this.local.reservations;
  }

  get reservations(): Reservations {
    return this.committed;
  }

  async changeReservations<T>(change: (r: Reservations) => T): Promise<T> {
    const raised: Array<[Registration, UnitAttentionReason]> = [];
    const copy = new Reservations({ toRegistration: (reg, reason) => raised.push([reg, reason]) });
    copy.restore(this.committed.snapshot());
    copy.spc2Holder = this.committed.spc2Holder;
    const out = change(copy); // a throw leaves `committed` as it was
    this.committed = copy;
    this.commits++;
    for (const [reg, reason] of raised) this.local.raiseUaForRegistration(reg, reason);
    return out;
  }

  attachNexus(n: ItNexus, reason: UnitAttentionReason): void {
    this.local.attachNexus(n, reason);
  }
  detachNexus(key: string): void {
    this.local.detachNexus(key);
    this.committed.dropSpc2(key);
  }
  reset(reason: UnitAttentionReason): void {
    this.committed.dropSpc2();
    this.local.raiseUaForAll(reason);
  }
  raiseUa(key: string, reason: UnitAttentionReason): void {
    this.local.raiseUa(key, reason);
  }
  raiseUaForAll(reason: UnitAttentionReason, exceptKey?: string): void {
    this.local.raiseUaForAll(reason, exceptKey);
  }
  takeUa(key: string): UnitAttentionReason | undefined {
    return this.local.takeUa(key);
  }
  nexusKeysCovering(regs: readonly Registration[]): Set<string> {
    return this.local.nexusKeysCovering(regs);
  }
}

function prout(sa: number, rk: bigint, sark: bigint, type = 0): { cdb: Buffer; data: Buffer } {
  const cdb = cdbOf([0x5f, sa, type], 10);
  cdb.writeUInt32BE(24, 5);
  const data = Buffer.alloc(24);
  data.writeBigUInt64BE(rk, 0);
  data.writeBigUInt64BE(sark, 8);
  return { cdb, data };
}

describe('LuState seam', () => {
  it('a transactional LuState slots in: PR OUT commits whole, a refused one changes nothing, UAs arrive after the commit', async () => {
    let state!: TransactionalLuState;
    const device = new ScsiDevice({
      logger: silentLogger,
      luns: [{ lun: 0, store: new MemoryStore(64 * 512), identity: identity(), state: (init) => (state = new TransactionalLuState(init)) }],
    });
    const a = nexus();
    const b = nexus();
    device.attachNexus(a);
    device.attachNexus(b);
    const run = (n: ItNexus, p: { cdb: Buffer; data: Buffer }) => device.execute(task(p.cdb, { nexus: n, dataOut: p.data }));
    const tur = (n: ItNexus) => device.execute(task(cdbOf([0, 0, 0, 0, 0, 0], 6), { nexus: n, edtl: 0 }));
    await tur(a); // POWER ON, RESET
    await tur(b);
    expect((await run(a, prout(6, 0n, 0xaan))).status).toBe(ScsiStatus.GOOD); // REGISTER AND IGNORE
    expect((await run(b, prout(6, 0n, 0xbbn))).status).toBe(ScsiStatus.GOOD);
    expect((await run(a, prout(1, 0xaan, 0n, 1))).status).toBe(ScsiStatus.GOOD); // RESERVE, Write Exclusive
    expect(state.commits).toBe(3);
    const generation = state.reservations.generation;

    // A RESERVE with the wrong key: RESERVATION CONFLICT, nothing committed.
    expect((await run(b, prout(1, 0x99n, 0n, 1))).status).toBe(ScsiStatus.RESERVATION_CONFLICT);
    expect(state.commits).toBe(3);
    expect(state.reservations.generation).toBe(generation);

    // The core reads the committed state: b may not write.
    const write = cdbOf([0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0], 10);
    expect((await device.execute(task(write, { nexus: b, dataOut: Buffer.alloc(512) }))).status).toBe(ScsiStatus.RESERVATION_CONFLICT);

    // PREEMPT: a's registration goes; a learns it by REGISTRATIONS PREEMPTED (6/2A/05), raised after the commit.
    expect((await run(b, prout(4, 0xbbn, 0xaan, 1))).status).toBe(ScsiStatus.GOOD);
    expect(state.commits).toBe(4);
    expect(state.reservations.registrations.map((r) => r.key)).toEqual([0xbbn]);
    const s = senseOf(await tur(a));
    expect([s.key, s.asc, s.ascq]).toEqual([6, 0x2a, 0x05]);
    expect((await device.execute(task(write, { nexus: b, dataOut: Buffer.alloc(512) }))).status).toBe(ScsiStatus.GOOD);
  });
});
