/**
 * The interop harness itself: prerequisite reporting (loud skip locally, failure in CI),
 * bounded child processes, ports.
 */
import * as net from 'node:net';

describe('requireTool', () => {
  const saved = process.env.CI;
  afterEach(() => {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
    jest.resetModules();
  });

  async function load(ci: string | undefined) {
    if (ci === undefined) delete process.env.CI;
    else process.env.CI = ci;
    jest.resetModules();
    return import('./harness');
  }

  it('finds a tool on PATH', async () => {
    const h = await load(undefined);
    expect(h.requireTool('sh', 'dash')).toBe(true);
  });

  it('skips loudly when a tool is missing and CI is not set', async () => {
    const h = await load(undefined);
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      expect(h.requireTool('no-such-tool-xcopyd', 'no-such-package')).toBe(false);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][0])).toMatch(/SKIPPING[\s\S]*apt-get install -y no-such-package[\s\S]*FAILURE/);
    } finally {
      warn.mockRestore();
    }
  });

  it('fails when a tool is missing under CI=true', async () => {
    const h = await load('true');
    expect(() => h.requireTool('no-such-tool-xcopyd', 'no-such-package')).toThrow(/CI=true.*apt-get install -y no-such-package/);
  });
});

describe('run', () => {
  it('returns output and exit code', async () => {
    const { run } = await import('./harness');
    const r = await run('sh', ['-c', 'echo out; echo err >&2; exit 3'], { timeoutMs: 10_000 });
    expect(r).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n', timedOut: false });
  });

  it('kills a command that outlives its time limit', async () => {
    const { run } = await import('./harness');
    const r = await run('sleep', ['30'], { timeoutMs: 300 });
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe('SIGTERM');
    expect(r.ms).toBeLessThan(10_000);
  });
});

describe('ports', () => {
  it('freePort gives a port that 127.0.0.1 can bind, waitForPort sees it listening', async () => {
    const { freePort, waitForPort } = await import('./harness');
    const port = await freePort();
    expect(await waitForPort(port, 300)).toBe(false);
    const srv = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
    try {
      expect(await waitForPort(port, 5_000)).toBe(true);
    } finally {
      await new Promise((r) => srv.close(r));
    }
  });

  it('freePortInRange stays in range (tgtd needs < 32768)', async () => {
    const { freePortInRange } = await import('./harness');
    const p = await freePortInRange(20_000, 32_000);
    expect(p).toBeGreaterThanOrEqual(20_000);
    expect(p).toBeLessThanOrEqual(32_000);
  });
});
