/**
 * `xcopyd status`: the report the daemon builds (buildStatus, sent over the
 * control socket as JSON) and its human rendering (renderStatus), with a
 * cli-progress bar per running copy.
 */
import cliProgress from 'cli-progress';
import type { Daemon } from './daemon';

export interface SessionStatus {
  tsih: number;
  initiator: string;
  isid: string;
  type: 'Discovery' | 'Normal';
  target: string | null;
  ageS: number;
  commandsInFlight: number;
  connections: number;
  params: Record<string, unknown>;
}

export interface LunStatus {
  target: string;
  lun: number;
  path: string;
  bytes: number;
  blockSize: number;
  physicalBlockSize: number;
  readOnly: boolean;
  writeCache: boolean;
  vendor: string;
  product: string;
  serial: string;
  naa: string;
}

export interface CopyStatus {
  target: string;
  lun: number;
  initiator: string;
  listId: number;
  operation: string;
  background: boolean;
  state: string;
  bytesDone: number;
  bytesTotal: number;
  percent: number;
  segmentsProcessed: number;
}

export interface TokenStatus {
  id: string;
  target: string | null;
  lun: number;
  mode: string;
  bytes: number;
  ranges: Array<{ lba: number; blocks: number }>;
  inUse: number;
  createdAt: string;
  /** When it expires if left unused (it cannot expire while in use). */
  expiresAt: string;
}

export interface StatusReport {
  pid: number;
  startedAt: string;
  uptimeS: number;
  targets: Array<{ iqn: string; acl: string[] | null; luns: number[] }>;
  sessions: SessionStatus[];
  luns: LunStatus[];
  copies: CopyStatus[];
  tokens: TokenStatus[];
}

function operationName(sa: number): string {
  switch (sa) {
    case 0x00: return 'EXTENDED COPY(LID1)';
    case 0x01: return 'EXTENDED COPY(LID4)';
    case 0x10: return 'POPULATE TOKEN';
    case 0x11: return 'WRITE USING TOKEN';
    default: return `0x${sa.toString(16)}`;
  }
}

export function buildStatus(d: Daemon): StatusReport {
  const now = Date.now();
  const live = d.targets();
  const sessions: SessionStatus[] = (d.server?.sessions() ?? []).map((s) => ({
    tsih: s.tsih,
    initiator: s.initiatorName,
    isid: s.isidHex,
    type: s.type,
    target: s.target?.name ?? null,
    ageS: Math.round((now - s.createdAt) / 1000),
    commandsInFlight: s.commandsInFlight,
    connections: s.connections.size,
    params: { ...s.params },
  }));
  const luns: LunStatus[] = [];
  const copies: CopyStatus[] = [];
  for (const lt of live) {
    for (const lu of lt.device.logicalUnits()) {
      const cfg = lt.luns.get(lu.lun)?.config;
      luns.push({
        target: lt.config.iqn,
        lun: lu.lun,
        path: cfg?.path ?? '',
        bytes: lu.store.sizeBytes,
        blockSize: lu.blockSize,
        physicalBlockSize: lu.store.physicalBlockSize,
        readOnly: lu.readOnly,
        writeCache: lu.mode.writeCacheEnabled,
        vendor: lu.identity.vendor,
        product: lu.identity.product,
        serial: lu.identity.serial,
        naa: lu.identity.naa.toString('hex'),
      });
    }
    for (const op of lt.device.copyManager.running()) {
      copies.push({
        target: lt.config.iqn,
        lun: op.lun,
        initiator: op.nexusKey.split('|')[0],
        listId: op.listId,
        operation: operationName(op.serviceAction),
        background: op.background,
        state: op.state,
        bytesDone: op.bytesTransferred,
        bytesTotal: op.totalBytes,
        percent: op.percent,
        segmentsProcessed: op.segmentsProcessed,
      });
    }
  }
  // Live ROD tokens (the daemon-wide store), with the source ranges they stand for.
  const tokens: TokenStatus[] = (d.rodTokens?.tokens() ?? []).map((t) => {
    const owner = live.find((lt) => lt.device.logicalUnit(t.lu.lun) === t.lu);
    return {
      id: t.key,
      target: owner?.config.iqn ?? null,
      lun: t.lu.lun,
      mode: t.mode,
      bytes: t.bytesRepresented,
      ranges: t.ranges.map((r) => ({ lba: r.src / t.blockSize, blocks: r.bytes / t.blockSize })),
      inUse: t.uses,
      createdAt: new Date(t.createdAt).toISOString(),
      expiresAt: new Date(Math.max(now, t.lastUse) + (t.uses > 0 ? t.inactivityMs : t.inactivityMs - Math.max(0, now - t.lastUse))).toISOString(),
    };
  });
  return {
    pid: process.pid,
    startedAt: new Date(d.startedAt).toISOString(),
    uptimeS: Math.round((now - d.startedAt) / 1000),
    targets: live.map((lt) => ({
      iqn: lt.config.iqn,
      acl: lt.config.acls ? lt.config.acls.map((a) => a.initiator) : null,
      luns: [...lt.luns.keys()].sort((a, b) => a - b),
    })),
    sessions,
    luns,
    copies,
    tokens,
  };
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((x, c) => x.padEnd(widths[c])).join('  ').trimEnd()).join('\n') + '\n';
}

/** The human report; copies get a progress bar each (cli-progress, drawn once). */
export function renderStatus(r: StatusReport, out: NodeJS.WritableStream & { isTTY?: boolean }): void {
  const w = (s: string) => out.write(s);
  w(`xcopyd pid ${r.pid}, up ${r.uptimeS} s (since ${r.startedAt})\n\n`);
  w(`Sessions (${r.sessions.length})\n`);
  if (r.sessions.length) {
    w(
      table([
        ['TSIH', 'INITIATOR', 'ISID', 'TARGET', 'AGE', 'IN FLIGHT', 'MAXBURST', 'MRDSL', 'DIGESTS'],
        ...r.sessions.map((s) => [
          String(s.tsih),
          s.initiator,
          s.isid,
          s.target ?? '(discovery)',
          `${s.ageS}s`,
          String(s.commandsInFlight),
          String(s.params.maxBurstLength ?? ''),
          String(s.params.maxRecvDataSegmentLength ?? ''),
          `${s.params.headerDigest ?? 'None'}/${s.params.dataDigest ?? 'None'}`,
        ]),
      ]),
    );
  }
  w(`\nLUNs (${r.luns.length})\n`);
  w(
    table([
      ['TARGET', 'LUN', 'SIZE', 'BLOCK', 'RO', 'WCE', 'PRODUCT', 'NAA', 'PATH'],
      ...r.luns.map((l) => [
        l.target,
        String(l.lun),
        bytes(l.bytes),
        `${l.blockSize}/${l.physicalBlockSize}`,
        l.readOnly ? 'yes' : 'no',
        l.writeCache ? 'yes' : 'no',
        `${l.vendor} ${l.product}`,
        l.naa,
        l.path,
      ]),
    ]),
  );
  w(`\nCopies (${r.copies.length})\n`);
  if (r.copies.length) {
    const bars = new cliProgress.MultiBar(
      {
        stream: out as NodeJS.WriteStream,
        noTTYOutput: true,
        notTTYSchedule: 1 << 30,
        hideCursor: false,
        clearOnComplete: false,
        stopOnComplete: false,
        format: ' {op} list {listId} {target}/{lun} |{bar}| {percentage}% {done}/{size}',
        barsize: 30,
      },
      cliProgress.Presets.shades_classic,
    );
    for (const c of r.copies) {
      const b = bars.create(Math.max(1, c.bytesTotal), c.bytesDone, {
        op: c.operation,
        listId: c.listId,
        target: c.target,
        lun: c.lun,
        done: bytes(c.bytesDone),
        size: bytes(c.bytesTotal),
      });
      b.render();
    }
    bars.update();
    bars.stop();
  }
  w(`\nROD tokens (${r.tokens.length})\n`);
  if (r.tokens.length) {
    w(
      table([
        ['ID', 'TARGET', 'LUN', 'MODE', 'SIZE', 'RANGES (LBA+BLOCKS)', 'IN USE', 'EXPIRES'],
        ...r.tokens.map((t) => [
          t.id,
          t.target ?? '?',
          String(t.lun),
          t.mode,
          bytes(t.bytes),
          t.ranges.map((x) => `${x.lba}+${x.blocks}`).join(','),
          String(t.inUse),
          t.expiresAt,
        ]),
      ]),
    );
  }
}
