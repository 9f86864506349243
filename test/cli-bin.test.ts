/**
 * The `xcopyd` command as the README uses it (issue 13): package.json's bin works
 * right after `npm ci` in a checkout, with no build (`npx xcopyd ...`), through a
 * symlink on PATH (what `npm link` makes), and in an install with only dist/.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const REPO = path.join(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> };

jest.setTimeout(120000);

function run(file: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  return new Promise<{ code: number; out: string; err: string }>((resolve) =>
    execFile(file, args, { cwd: opts.cwd ?? REPO, env: opts.env ?? process.env, timeout: 90000 }, (e, stdout, stderr) =>
      resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out: stdout, err: stderr }),
    ),
  );
}

describe('the xcopyd command', () => {
  it('npx xcopyd --check-config runs from the checkout without a build', async () => {
    // As the README writes it; npm_config_yes=false: never fetch a package of that name from the registry.
    const env = { ...process.env, npm_config_yes: 'false' };
    const r = await run('npx', ['xcopyd', '--check-config', 'configs/default.yaml'], { env });
    expect(r.err).toBe('');
    expect(r.out).toBe('configs/default.yaml: valid\n');
    expect(r.code).toBe(0);
    const bad = await run('npx', ['xcopyd', '--check-config', 'package.json'], { env });
    expect(bad.code).toBe(1);
  });

  it('works as a plain command through a symlink on PATH (npm link), status included', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-bin-'));
    try {
      const bin = path.join(REPO, pkg.bin.xcopyd);
      expect(fs.statSync(bin).mode & 0o111).toBe(0o111);
      fs.symlinkSync(bin, path.join(dir, 'xcopyd'));
      const env = { ...process.env, PATH: `${dir}:${process.env.PATH}` };
      const help = await run('xcopyd', ['--help'], { cwd: dir, env });
      expect(help.code).toBe(0);
      expect(help.out).toMatch(/^usage: xcopyd /);
      const status = await run('xcopyd', ['status', '--socket', path.join(dir, 'none.sock')], { cwd: dir, env });
      expect(status.code).toBe(1);
      expect(status.err).toContain(`xcopyd status: ${path.join(dir, 'none.sock')}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs dist/src/main.js in an install without ts-node, and says what is missing when neither is there', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xcopyd-bin-'));
    try {
      const bin = path.join(dir, pkg.bin.xcopyd);
      fs.mkdirSync(path.dirname(bin), { recursive: true });
      fs.copyFileSync(path.join(REPO, pkg.bin.xcopyd), bin);
      const none = await run(process.execPath, [bin, '--help'], { cwd: dir });
      expect(none.code).toBe(1);
      expect(none.err).toContain('npm ci');
      fs.mkdirSync(path.join(dir, 'dist', 'src'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'dist', 'src', 'main.js'), "process.stdout.write('built ' + process.argv.slice(2).join(' '));\n");
      const built = await run(process.execPath, [bin, '--help'], { cwd: dir });
      expect(built).toEqual({ code: 0, out: 'built --help', err: '' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
