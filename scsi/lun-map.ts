/**
 * The LUN map of a device: its logical units by their own LUN, and what each
 * I_T nexus sees of them - ACL masking (`filter`) and per-nexus LUN maps
 * (`map`, LIO's mapped LUNs), both read at every command so a configuration
 * reload changes them at run time. Inside the device (tasks, copies,
 * reservations) an LU goes by its own LUN; only REPORT LUNS and the LUN field
 * of a command use the nexus's numbers.
 */
import type { ItNexus } from './types';
import { LogicalUnit, type LogicalUnitOptions } from './logical-unit';

export type LunFilter = (nexus: ItNexus, lun: number) => boolean;
export type NexusLunMap = (nexus: ItNexus) => ReadonlyMap<number, number> | undefined;

export class LunMap {
  private readonly units = new Map<number, LogicalUnit>();

  constructor(
    private readonly filter: LunFilter = () => true,
    private readonly map: NexusLunMap = () => undefined,
  ) {}

  /** Make the LU of `o` and add it under its own LUN. */
  add(o: LogicalUnitOptions): LogicalUnit {
    if (!Number.isInteger(o.lun) || o.lun < 0 || o.lun >= 16384) throw new Error(`LUN ${o.lun} out of range 0..16383`);
    if (this.units.has(o.lun)) throw new Error(`LUN ${o.lun} configured twice`);
    const lu = new LogicalUnit(o);
    this.units.set(o.lun, lu);
    return lu;
  }

  /** Take the LU with this LUN out of the map (new commands no longer reach it). */
  remove(lun: number): LogicalUnit | undefined {
    const lu = this.units.get(lun);
    this.units.delete(lun);
    return lu;
  }

  /** The LU with this device's own LUN. */
  get(lun: number): LogicalUnit | undefined {
    return this.units.get(lun);
  }

  all(): IterableIterator<LogicalUnit> {
    return this.units.values();
  }

  /** The LUNs `nexus` addresses, in its own numbering (REPORT LUNS). */
  lunsFor(nexus: ItNexus): number[] {
    const map = this.map(nexus);
    const luns = map
      ? [...map].filter(([, own]) => this.units.has(own) && this.filter(nexus, own)).map(([lun]) => lun)
      : [...this.units.keys()].filter((lun) => this.filter(nexus, lun));
    return luns.sort((a, b) => a - b);
  }

  /** The logical units `nexus` may reach under any LUN (copy scopes; each LU's own LUN is lu.lun). */
  unitsFor(nexus: ItNexus): LogicalUnit[] {
    const map = this.map(nexus);
    const own = map ? new Set(map.values()) : this.units.keys();
    const out: LogicalUnit[] = [];
    for (const lun of own) {
      const lu = this.units.get(lun);
      if (lu && this.filter(nexus, lun)) out.push(lu);
    }
    return out.sort((a, b) => a.lun - b.lun);
  }

  /** The LU `nexus` addresses as `lun` (its LUN map, then masking). */
  luFor(nexus: ItNexus, lun: number): LogicalUnit | undefined {
    const map = this.map(nexus);
    const own = map ? map.get(lun) : lun;
    if (own === undefined) return undefined;
    const lu = this.units.get(own);
    return lu && this.filter(nexus, own) ? lu : undefined;
  }

  /** The LU with this device's LUN `lun`, if `nexus` may reach it under some LUN (internal copy port). */
  reachable(nexus: ItNexus, lun: number): LogicalUnit | undefined {
    const lu = this.units.get(lun);
    if (!lu || !this.filter(nexus, lun)) return undefined;
    const map = this.map(nexus);
    if (!map) return lu;
    for (const own of map.values()) if (own === lun) return lu;
    return undefined;
  }

  /** What `nexus` sees, as a comparable string (`nexusLun:ownLun,...`; before/after a reload). */
  inventory(nexus: ItNexus): string {
    return this.lunsFor(nexus).map((l) => `${l}:${this.luFor(nexus, l)!.lun}`).join(',');
  }
}
