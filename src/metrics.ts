/**
 * Prometheus metrics (prom-client), off unless `metrics.listen` is set.
 *
 * Where the numbers come from, so nothing is paid when metrics are off:
 *  - commands, latency, bytes read/written: a wrapper around each target's
 *    ScsiDevice, put between the transport and the device only when metrics
 *    are on (instrumentDevice);
 *  - copy bytes (offloaded in the kernel / cloned / through buffers): the
 *    CopyRangeResult of every FileStore.copyRange (FileStore.onCopied, unset
 *    when off);
 *  - copy operations by outcome: CopyManager's onFinished hook (one optional
 *    call per operation);
 *  - ROD token lifecycle: the token store's onEvent hook (RodTokenStore.onEvent,
 *    unset when off);
 *  - sessions, live tokens: read at scrape time;
 *  - login failures by reason: IscsiServer's onLoginFailure hook.
 */
import http from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from 'pino';
import type { CopyRangeResult } from '../scsi/backing-store';
import type { CopyOperation } from '../scsi/copy/copy-manager';
import type { TokenEvent } from '../scsi/copy/token-store';
import { Opcode } from '../scsi/opcodes';
import { ScsiStatus, type ItNexus, type ScsiDevice, type ScsiResult, type ScsiTask, type TmfFunction } from '../scsi/types';
import { parseHostPort } from '../iscsi/server';

const OPCODE_NAMES = new Map<number, string>([
  ...Object.entries(Opcode).map(([name, code]) => [code, name.toLowerCase()] as [number, string]),
  [0x83, 'third_party_copy_out'],
  [0x84, 'third_party_copy_in'],
]);
const READS = new Set<number>([Opcode.READ_6, Opcode.READ_10, Opcode.READ_12, Opcode.READ_16]);
const WRITES = new Set<number>([
  Opcode.WRITE_6, Opcode.WRITE_10, Opcode.WRITE_12, Opcode.WRITE_16,
  Opcode.WRITE_AND_VERIFY_10, Opcode.WRITE_AND_VERIFY_12, Opcode.WRITE_AND_VERIFY_16, Opcode.COMPARE_AND_WRITE,
]);
const STATUS_NAMES: Record<number, string> = {
  [ScsiStatus.GOOD]: 'good',
  [ScsiStatus.CHECK_CONDITION]: 'check_condition',
  [ScsiStatus.BUSY]: 'busy',
  [ScsiStatus.RESERVATION_CONFLICT]: 'reservation_conflict',
  [ScsiStatus.TASK_SET_FULL]: 'task_set_full',
  [ScsiStatus.TASK_ABORTED]: 'task_aborted',
};
/** Every token lifecycle event, so each series exists (at 0) from the first scrape. */
const TOKEN_EVENTS: readonly TokenEvent[] = ['created', 'used', 'expired', 'deleted', 'cancelled', 'revoked'];
const SENSE_KEYS = [
  'no_sense', 'recovered_error', 'not_ready', 'medium_error', 'hardware_error', 'illegal_request', 'unit_attention',
  'data_protect', 'blank_check', 'vendor_specific', 'copy_aborted', 'aborted_command', 'reserved_c', 'volume_overflow',
  'miscompare', 'completed',
];

export function opcodeLabel(op: number): string {
  return OPCODE_NAMES.get(op) ?? `0x${op.toString(16).padStart(2, '0')}`;
}

/** "good", "check_condition:illegal_request", ... */
export function resultLabel(r: ScsiResult): string {
  const status = STATUS_NAMES[r.status] ?? `0x${r.status.toString(16)}`;
  if (r.status !== ScsiStatus.CHECK_CONDITION || !r.sense || r.sense.length < 3) return status;
  const fmt = r.sense[0] & 0x7f;
  const key = (fmt === 0x72 || fmt === 0x73 ? r.sense[1] : r.sense[2]) & 0x0f;
  return `${status}:${SENSE_KEYS[key]}`;
}

/** Login Response status class/detail -> reason label (RFC 7143 §11.13.5). */
export function loginFailureReason(statusClass: number, statusDetail: number): string {
  const code = (statusClass << 8) | statusDetail;
  switch (code) {
    case 0x0201: return 'authentication';
    case 0x0202: return 'authorization';
    case 0x0203: return 'target_not_found';
    case 0x0204: return 'target_removed';
    case 0x0205: return 'unsupported_version';
    case 0x0206: return 'too_many_connections';
    case 0x0207: return 'missing_parameter';
    case 0x020a: return 'session_does_not_exist';
    case 0x0301: return 'out_of_resources';
    default: return statusClass === 2 ? 'initiator_error' : statusClass === 3 ? 'target_error' : `0x${code.toString(16)}`;
  }
}

export interface MetricsSources {
  /** Live sessions by type, read at scrape time. */
  sessions(): Array<{ type: string; target?: string }>;
  /** Live ROD tokens, read at scrape time. */
  liveTokens(): number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly commands: Counter<'opcode' | 'result'>;
  readonly commandSeconds: Histogram<'opcode'>;
  readonly bytesRead: Counter;
  readonly bytesWritten: Counter;
  readonly copyBytes: Counter<'method'>;
  readonly copyOperations: Counter<'operation' | 'outcome'>;
  readonly tokenEvents: Counter<'event'>;
  readonly loginFailures: Counter<'reason'>;
  private server: http.Server | null = null;
  /** Bound address once listening. */
  address: { host: string; port: number } | null = null;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'xcopyd_' });
    this.commands = new Counter({ name: 'xcopyd_scsi_commands_total', help: 'SCSI commands by opcode and result (status, sense key)', labelNames: ['opcode', 'result'], registers });
    this.commandSeconds = new Histogram({
      name: 'xcopyd_scsi_command_duration_seconds',
      help: 'SCSI command latency inside the device server, by opcode',
      labelNames: ['opcode'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.bytesRead = new Counter({ name: 'xcopyd_read_bytes_total', help: 'Bytes read by initiators (READ commands)', registers });
    this.bytesWritten = new Counter({ name: 'xcopyd_written_bytes_total', help: 'Bytes written by initiators (WRITE commands)', registers });
    this.copyBytes = new Counter({
      name: 'xcopyd_copy_bytes_total',
      help: 'Bytes moved by the copy data mover: offloaded (copy_file_range in the kernel), cloned (reflink), buffered (through user space), holes (left unallocated)',
      labelNames: ['method'],
      registers,
    });
    this.copyOperations = new Counter({
      name: 'xcopyd_copy_operations_total',
      help: 'Copy operations (EXTENDED COPY, POPULATE TOKEN, WRITE USING TOKEN) by outcome',
      labelNames: ['operation', 'outcome'],
      registers,
    });
    this.tokenEvents = new Counter({
      name: 'xcopyd_rod_token_events_total',
      help: 'ROD token lifecycle: created, used, expired, deleted, cancelled, revoked',
      labelNames: ['event'],
      registers,
    });
    this.loginFailures = new Counter({ name: 'xcopyd_login_failures_total', help: 'Refused iSCSI logins by reason', labelNames: ['reason'], registers });
    new Gauge({
      name: 'xcopyd_sessions',
      help: 'Live iSCSI sessions by type and target',
      labelNames: ['type', 'target'],
      registers,
      collect() {
        this.reset();
        for (const s of sources.sessions()) this.inc({ type: s.type, target: s.target ?? '' });
      },
    });
    new Gauge({
      name: 'xcopyd_rod_tokens_live',
      help: 'Live ROD tokens',
      registers,
      collect() {
        this.set(sources.liveTokens());
      },
    });
    // Zero-valued series exist from the start, so rate() works from the first scrape.
    for (const method of ['offloaded', 'cloned', 'buffered', 'holes']) this.copyBytes.inc({ method }, 0);
    for (const event of TOKEN_EVENTS) this.tokenEvents.inc({ event }, 0);
  }

  /** RodTokenStore.onEvent while metrics are on. */
  tokenEvent(event: TokenEvent): void {
    this.tokenEvents.inc({ event });
  }

  command(task: ScsiTask, r: ScsiResult, seconds: number): void {
    const op = task.cdb[0];
    const opcode = opcodeLabel(op);
    this.commands.inc({ opcode, result: resultLabel(r) });
    this.commandSeconds.observe({ opcode }, seconds);
    if (r.status !== ScsiStatus.GOOD) return;
    if (READS.has(op)) this.bytesRead.inc(Math.min(r.dataInLength ?? 0, task.expectedDataTransferLength));
    else if (WRITES.has(op)) this.bytesWritten.inc(r.dataOutLength ?? task.expectedDataTransferLength);
  }

  copied(r: CopyRangeResult): void {
    if (r.offloaded) this.copyBytes.inc({ method: 'offloaded' }, r.offloaded);
    if (r.cloned) this.copyBytes.inc({ method: 'cloned' }, r.cloned);
    if (r.buffered) this.copyBytes.inc({ method: 'buffered' }, r.buffered);
    if (r.holes) this.copyBytes.inc({ method: 'holes' }, r.holes);
  }

  copyFinished(op: CopyOperation): void {
    const operation =
      op.serviceAction === 0x10 ? 'populate_token' : op.serviceAction === 0x11 ? 'write_using_token' : 'extended_copy';
    this.copyOperations.inc({ operation, outcome: op.state });
  }

  async listen(hostPort: string, log: Logger): Promise<void> {
    const { host, port } = parseHostPort(hostPort);
    const server = http.createServer((req, res) => {
      if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
        res.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(err.message),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address();
    this.address = { host, port: typeof a === 'object' && a ? a.port : port };
    this.server = server;
    log.info({ host, port: this.address.port }, 'metrics endpoint listening');
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  }
}

/**
 * The device as the transport sees it, with every command counted and timed.
 * Used only while metrics are on; otherwise the transport calls the device.
 */
export function instrumentDevice(device: ScsiDevice, metrics: () => Metrics | null): ScsiDevice {
  return {
    lunsFor: (nexus: ItNexus) => device.lunsFor(nexus),
    attachNexus: (nexus: ItNexus) => device.attachNexus(nexus),
    detachNexus: (nexus: ItNexus) => device.detachNexus(nexus),
    taskManagement: (fn: TmfFunction, nexus: ItNexus, lun: number) => device.taskManagement(fn, nexus, lun),
    close: () => device.close(),
    async execute(task: ScsiTask) {
      const t0 = process.hrtime.bigint();
      const r = await device.execute(task);
      metrics()?.command(task, r, Number(process.hrtime.bigint() - t0) / 1e9);
      return r;
    },
  };
}
