/**
 * Start etcd-node.ts in a child process (ts-node, transpile only) and wait, bounded, for its
 * 'ready' line. Stopped by its PID: SIGSTOP/SIGCONT, SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { REPO_ROOT } from '../harness';
import type { ItNexus } from '../../../scsi/types';
import type { EtcdNodeArgs } from './etcd-node';

export interface EtcdNodeProcess {
  readonly pid: number;
  stop(): void;
  cont(): void;
  kill(): Promise<void>;
}

export function startEtcdNode(args: EtcdNodeArgs, timeoutMs = 60_000): Promise<EtcdNodeProcess> {
  const script = path.join(__dirname, 'etcd-node.ts');
  const child: ChildProcess = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', script, JSON.stringify(args)], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-8_000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const handle: EtcdNodeProcess = {
    pid: child.pid!,
    stop: () => void child.kill('SIGSTOP'),
    cont: () => void child.kill('SIGCONT'),
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`etcd node ${args.nodeId} not ready within ${timeoutMs} ms; stderr:\n${err}`));
    }, timeoutMs);
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('ready\n')) {
        clearTimeout(timer);
        resolve(handle);
      }
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`etcd node ${args.nodeId} exited (${code ?? sig}) before ready; stderr:\n${err}`));
    });
  });
}

/** The I_T nexus the 'reserve' mode registers (the test rebuilds it to check the holder). */
export function childNexus(nodeId: string): ItNexus {
  const initiatorName = `iqn.2026-12.test:${nodeId}`;
  return { key: `${initiatorName},i,0x1,1`, initiatorName, initiatorPortName: `${initiatorName},i,0x1`, relativeTargetPort: 1, targetPortName: 'iqn.2026-12.test:target,t,0x1' };
}
