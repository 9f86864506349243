/**
 * sd_notify(3) for the systemd unit (Type=notify, WatchdogSec=): one datagram
 * per state change, "READY=1", "RELOADING=1", "STOPPING=1", "WATCHDOG=1", sent to
 * the AF_UNIX datagram socket $NOTIFY_SOCKET names (a path, or '@' for a name in
 * the abstract namespace). Outside systemd ($NOTIFY_SOCKET unset) nothing is sent.
 *
 * Node has no AF_UNIX datagram sockets, so socket(2) and sendto(2) are called
 * through koffi, already bound for the stores (src/backing/libc.ts): no new
 * dependency and no child process. `systemd-notify` would be a process of its
 * own, which systemd attributes to the main PID only with NotifyAccess=all and
 * only while it is still alive (the documented race); npm's sd-notify packages
 * are native addons built at install time.
 */

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(sun_path) in struct sockaddr_un (Linux). */
const SUN_PATH = 108;

/** struct sockaddr_un for $NOTIFY_SOCKET and its length, or an error for a name that is not one. */
export function notifySocketAddress(name: string): { addr: Buffer; length: number } {
  const abstract = name.startsWith('@');
  if (!abstract && !name.startsWith('/')) throw new Error(`NOTIFY_SOCKET=${name}: neither an absolute path nor an abstract name (@...)`);
  const bytes = Buffer.from(abstract ? name.slice(1) : name, 'utf8');
  // abstract: a leading NUL, then the name, no terminator; a path: NUL-terminated.
  const used = bytes.length + 1;
  if (used > SUN_PATH) throw new Error(`NOTIFY_SOCKET=${name}: longer than ${SUN_PATH - 1} bytes`);
  const addr = Buffer.alloc(2 + SUN_PATH);
  addr.writeUInt16LE(AF_UNIX, 0); // sa_family_t, host order (little-endian on the Linux ABIs Node runs on)
  bytes.copy(addr, abstract ? 3 : 2);
  return { addr, length: 2 + used };
}

export interface Notifier {
  /** Send `state` (KEY=VALUE lines); false when it could not be sent (logged by the caller). */
  notify(state: string): boolean;
  /** The watchdog interval systemd asks for, in milliseconds, when it asks this process. */
  readonly watchdogMs: number | undefined;
  close(): void;
}

/**
 * A notifier for $NOTIFY_SOCKET, or undefined when the variable is unset (not
 * under systemd, or Type= other than notify). Throws when it is set but
 * unusable (a bad name, no koffi), which the caller logs.
 */
export function createNotifier(env: NodeJS.ProcessEnv = process.env): Notifier | undefined {
  const name = env.NOTIFY_SOCKET;
  if (!name) return undefined;
  const { addr, length } = notifySocketAddress(name);
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const koffi = require('koffi');
  const lib = koffi.load('libc.so.6');
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const sendto = lib.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)');
  const close = lib.func('int close(int fd)');
  const fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw new Error(`NOTIFY_SOCKET: socket(AF_UNIX, SOCK_DGRAM): errno ${koffi.errno()}`);
  // WATCHDOG_USEC is for the main process only: WATCHDOG_PID, when set, says which one.
  const usec = Number(env.WATCHDOG_USEC);
  const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
  let open = true;
  return {
    watchdogMs: forUs && Number.isFinite(usec) && usec > 0 ? usec / 1000 : undefined,
    notify(state: string): boolean {
      if (!open) return false;
      const msg = Buffer.from(state, 'utf8');
      return Number(sendto(fd, msg, msg.length, MSG_NOSIGNAL, addr, length)) === msg.length;
    },
    close(): void {
      if (open) close(fd);
      open = false;
    },
  };
}

/** CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it beside (Node's hrtime is that clock). */
export function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n;
}
