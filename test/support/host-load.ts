/**
 * What a host-pattern test watches in a daemon running as its own process:
 * its memory (/proc/PID/status), its Prometheus metrics, and the bytes its
 * ROD token side files hold in <dataDir>/rod/.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

/** VmRSS and VmHWM (peak) of a process, bytes. */
export function processMemory(pid: number): { rss: number; hwm: number } {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string): number => {
    const m = new RegExp(`^${key}:\\s*(\\d+) kB$`, 'm').exec(text);
    if (!m) throw new Error(`no ${key} in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
}

/** Side files in <dataDir>/rod: how many, bytes allocated on disk (st_blocks) and apparent size. */
export function sideFiles(dataDir: string): { files: number; allocated: number; apparent: number } {
  const dir = path.join(dataDir, 'rod');
  const out = { files: 0, allocated: 0, apparent: 0 };
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    try {
      const st = fs.statSync(path.join(dir, name));
      if (!st.isFile()) continue;
      out.files++;
      out.allocated += st.blocks * 512;
      out.apparent += st.size;
    } catch {
      // removed between readdir and stat
    }
  }
  return out;
}

/** One scrape of /metrics: `name{labels}` (labels as printed) -> value. */
export function scrapeMetrics(port: number): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (s: string) => (body += s));
      res.on('end', () => {
        const out = new Map<string, number>();
        for (const line of body.split('\n')) {
          if (!line || line.startsWith('#')) continue;
          const m = /^(\S+?(?:\{[^}]*\})?) (\S+)$/.exec(line);
          if (m) out.set(m[1], Number(m[2]));
        }
        resolve(out);
      });
    });
    req.on('timeout', () => req.destroy(new Error('metrics scrape timed out')));
    req.on('error', reject);
  });
}

/** xcopyd_rod_token_events_total by event, and xcopyd_rod_tokens_live. */
export async function tokenMetrics(port: number): Promise<{ live: number; events: Record<string, number> }> {
  const m = await scrapeMetrics(port);
  const events: Record<string, number> = {};
  for (const [k, v] of m) {
    const e = /^xcopyd_rod_token_events_total\{event="(\w+)"\}$/.exec(k);
    if (e) events[e[1]] = v;
  }
  return { live: m.get('xcopyd_rod_tokens_live') ?? NaN, events };
}

/** Peaks of a few figures sampled along a run. */
export class Peaks {
  readonly max: Record<string, number> = {};
  note(values: Record<string, number>): void {
    for (const [k, v] of Object.entries(values)) this.max[k] = Math.max(this.max[k] ?? -Infinity, v);
  }
}
