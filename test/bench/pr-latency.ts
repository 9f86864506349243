/**
 * PERSISTENT RESERVE OUT latency with the reservations in etcd vs in the process (issue 15's
 * benchmark point; not a test). Each mode runs the same PR OUTs through a ScsiDevice's real
 * handler path, one at a time (QD1), round after round: REGISTER AND IGNORE EXISTING KEY (a new
 * key), RESERVE (WRITE EXCLUSIVE), RELEASE. Modes:
 *   local        LocalLuState, nothing written (APTPL=0)
 *   local-aptpl  LocalLuState, APTPL=1: the persist file written (temp file + rename) each time
 *   etcd         EtcdLuState against a real etcd on loopback (Debian's 3.4, started here,
 *                --members 1 or 3): one compare-and-swap transaction per PR OUT; with
 *                --nodes 2 (default) a second node serves the LU and each PR OUT also waits
 *                for its acknowledgement (openEtcdCluster's peers)
 * Prints median / p99 / max per mode and each mode's median over local's.
 *
 *   npx ts-node --transpile-only test/bench/pr-latency.ts [--rounds N] [--seconds S] [--members 1|3] [--nodes 1|2]
 * Bounded: --rounds (default 300, so 900 PR OUTs) and --seconds (default 30) per mode.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { openEtcdCluster } from '../../src/cluster/etcd-cluster';
import type { LuStateFactory } from '../../scsi/state/lu-state';
import { ScsiDevice } from '../../scsi/scsi-device';
import { ScsiStatus, type ItNexus } from '../../scsi/types';
import { cdbOf, identity, MemoryStore, task } from '../scsi/helpers';
import { startEtcd } from '../interop/engines/etcd';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

const ROUNDS = arg('rounds', 300);
const SECONDS = arg('seconds', 30);
const MEMBERS = arg('members', 1);
const NODES = arg('nodes', 2);
const log = pino({ level: 'silent' });

function prout(sa: number, type: number, rk: bigint, sark: bigint, aptpl: boolean): { cdb: Buffer; data: Buffer } {
  const cdb = cdbOf([0x5f, sa, type], 10);
  cdb.writeUInt32BE(24, 5);
  const data = Buffer.alloc(24);
  data.writeBigUInt64BE(rk, 0);
  data.writeBigUInt64BE(sark, 8);
  data[20] = aptpl ? 1 : 0;
  return { cdb, data };
}

interface Stats {
  n: number;
  median: number;
  p99: number;
  max: number;
}

function stats(ms: number[]): Stats {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { n: s.length, median: at(0.5), p99: at(0.99), max: s[s.length - 1] };
}

async function measure(name: string, device: ScsiDevice, aptpl: boolean): Promise<Stats> {
  const n: ItNexus = { key: 'iqn.2026-12.bench:h,i,0x1,1', initiatorName: 'iqn.2026-12.bench:h', initiatorPortName: 'iqn.2026-12.bench:h,i,0x1', relativeTargetPort: 1, targetPortName: 'iqn.2026-12.bench:t,t,0x1' };
  device.attachNexus(n);
  await device.execute(task([0, 0, 0, 0, 0, 0], { nexus: n })); // the POWER ON unit attention
  const times: number[] = [];
  const deadline = Date.now() + SECONDS * 1000;
  let key = 0n;
  const one = async (p: { cdb: Buffer; data: Buffer }) => {
    const t0 = process.hrtime.bigint();
    const r = await device.execute(task(p.cdb, { nexus: n, dataOut: p.data }));
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r.status !== ScsiStatus.GOOD) throw new Error(`${name}: PR OUT status ${r.status}`);
  };
  for (let i = 0; i < ROUNDS && Date.now() < deadline; i++) {
    const next = key + 1n;
    await one(prout(0x06, 0, 0n, next, aptpl)); // REGISTER AND IGNORE EXISTING KEY
    key = next;
    await one(prout(0x01, 0x1, key, 0n, aptpl)); // RESERVE, WRITE EXCLUSIVE
    await one(prout(0x02, 0x1, key, 0n, aptpl)); // RELEASE
  }
  const s = stats(times);
  console.log(`${name.padEnd(14)} n=${s.n}  median ${s.median.toFixed(3)} ms  p99 ${s.p99.toFixed(3)} ms  max ${s.max.toFixed(3)} ms`);
  return s;
}

function device(state?: LuStateFactory, persistPath?: string, naa?: Buffer): ScsiDevice & { lu0Naa: Buffer } {
  const id = { ...identity(0), naa: naa ?? Buffer.concat([Buffer.from([0x60]), randomBytes(15)]) };
  return Object.assign(new ScsiDevice({ logger: log, luns: [{ lun: 0, store: new MemoryStore(1024 * 512), identity: id, state, persistPath }] }), { lu0Naa: id.naa });
}

async function main(): Promise<void> {
  console.log(`PR OUT latency, QD1, ${ROUNDS} rounds of REGISTER/RESERVE/RELEASE (max ${SECONDS} s a mode); load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const dir = mkdtempSync(path.join(tmpdir(), 'xcopyd-pr-latency-'));
  const etcd = await startEtcd({ name: 'pr-latency', members: MEMBERS });
  try {
    const local = await measure('local', device(), false);
    const aptpl = await measure('local-aptpl', device(undefined, path.join(dir, 'lu0.json')), true);
    const nodeIds = NODES >= 2 ? ['a', 'b'] : ['a'];
    const cluster = await openEtcdCluster({ endpoints: etcd.endpoints, cluster: 'bench', nodeId: 'a', nodeIds, leaseTtlSeconds: 5, log });
    const other = NODES >= 2 ? await openEtcdCluster({ endpoints: etcd.endpoints, cluster: 'bench', nodeId: 'b', nodeIds, leaseTtlSeconds: 5, log }) : undefined;
    try {
      const d = device(cluster.luStateFactory);
      if (other) device(other.luStateFactory, undefined, d.lu0Naa);
      await cluster.luStatesReady();
      await other?.luStatesReady();
      const e = await measure(`etcd x${MEMBERS} ${nodeIds.length}n`, d, false);
      console.log(`median ratio: etcd/local ${(e.median / local.median).toFixed(1)}x, etcd/local-aptpl ${(e.median / aptpl.median).toFixed(1)}x; p99 ratio etcd/local ${(e.p99 / local.p99).toFixed(1)}x`);
    } finally {
      await other?.close();
      await cluster.close();
    }
  } finally {
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
