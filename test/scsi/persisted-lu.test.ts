/**
 * The LU's persistent state file (APTPL reservations, saved mode pages):
 * validated when read, written so that the rename survives a power cut.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { LogicalUnit } from '../../scsi/logical-unit';
import { identity, MemoryStore } from './helpers';

function unit(persistPath: string): LogicalUnit {
  return new LogicalUnit({ lun: 0, store: new MemoryStore(64 * 512), identity: identity(), persistPath });
}

describe('persisted LU state', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'xcopyd-lu-'));
    path = join(dir, 'pr-lu0.json');
  });
  afterEach(() => {
    jest.restoreAllMocks();
    rmSync(dir, { recursive: true, force: true });
  });

  const good = {
    version: 1,
    reservations: { generation: 3, aptpl: true, registrations: [{ key: 'abc', initiatorPortName: 'iqn.x,i,0x1', relativeTargetPort: 1, allTgPt: false }], reservation: { type: 1, holder: 0 } },
    savedMode: { writeCacheEnabled: false, descriptorSense: true },
  };

  it('a valid file restores reservations and saved mode pages', () => {
    writeFileSync(path, JSON.stringify(good));
    const lu = unit(path);
    expect(lu.state.reservations.generation).toBe(3);
    expect(lu.state.reservations.registrations.map((r) => r.key)).toEqual([0xabcn]);
    expect(lu.mode).toEqual({ writeCacheEnabled: false, descriptorSense: true });
  });

  it.each([
    ['a registration key that is not hex', { ...good, reservations: { ...good.reservations, registrations: [{ ...good.reservations.registrations[0], key: 'xyz' }] } }, 'reservations.registrations.0.key'],
    ['registrations not a list', { ...good, reservations: { ...good.reservations, registrations: 'x' } }, 'reservations.registrations'],
    ['a saved mode flag that is not a boolean', { ...good, savedMode: { writeCacheEnabled: 'no', descriptorSense: false } }, 'savedMode.writeCacheEnabled'],
    ['an unknown version', { ...good, version: 2 }, 'version'],
    ['a holder that is no registration', { ...good, reservations: { ...good.reservations, reservation: { type: 1, holder: 5 } } }, 'reservations.reservation.holder'],
  ])('%s: a clear error naming the file and the key', (_what, doc, key) => {
    writeFileSync(path, JSON.stringify(doc));
    expect(() => unit(path)).toThrow(path);
    expect(() => unit(path)).toThrow(key);
  });

  it('a file that is not JSON: a clear error naming the file', () => {
    writeFileSync(path, '{"version": 1, "reserv');
    expect(() => unit(path)).toThrow(path);
  });

  it('persist writes a temporary file, syncs it, renames it over the old one, then syncs the directory', async () => {
    const events: string[] = [];
    const realOpen = fsp.open.bind(fsp);
    jest.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const fh = await realOpen(...args);
      const name = String(args[0]) === dir ? 'dir' : String(args[0]).endsWith('.tmp') ? 'tmp' : String(args[0]);
      const sync = fh.sync.bind(fh);
      const datasync = fh.datasync.bind(fh);
      fh.sync = async () => (events.push(`sync ${name}`), sync());
      fh.datasync = async () => (events.push(`datasync ${name}`), datasync());
      return fh;
    });
    const realRename = fsp.rename.bind(fsp);
    jest.spyOn(fsp, 'rename').mockImplementation(async (a, b) => (events.push('rename'), realRename(a, b)));
    const lu = unit(path);
    lu.savedMode = { writeCacheEnabled: false, descriptorSense: false };
    await lu.persist();
    const synced = events.findIndex((e) => /sync tmp/.test(e));
    expect(synced).toBeGreaterThanOrEqual(0);
    expect(events.indexOf('rename')).toBeGreaterThan(synced);
    expect(events.findIndex((e) => /sync dir/.test(e))).toBeGreaterThan(events.indexOf('rename'));
    expect(dirname(path)).toBe(dir);
    expect(JSON.parse(readFileSync(path, 'utf8')).savedMode.writeCacheEnabled).toBe(false);
    expect(unit(path).mode.writeCacheEnabled).toBe(false);
  });
});
