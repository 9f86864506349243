#!/usr/bin/env node
/**
 * The `xcopyd` command (package.json "bin"), from a checkout or an install:
 *  - in a checkout after `npm ci` (dev dependencies, so ts-node, are there) it runs
 *    src/main.ts through ts-node (transpile only, no type check): no build step, and
 *    never a stale dist/ after an edit;
 *  - in an install without dev dependencies (`npm ci --omit=dev` after `npm run build`)
 *    it runs tsc's output, dist/src/main.js, which is also what the systemd unit runs.
 * `npx xcopyd ...` in the checkout, or `npm link` (or a symlink to this file in a
 * directory on PATH) for a plain `xcopyd`; Node resolves the symlink, so the paths
 * below are the checkout's.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const source = path.join(root, 'src', 'main.ts');
const built = path.join(root, 'dist', 'src', 'main.js');

let tsNode;
try {
  tsNode = require.resolve('ts-node', { paths: [root] });
} catch {
  tsNode = undefined;
}
if (tsNode && fs.existsSync(source)) {
  require(tsNode).register({ transpileOnly: true, project: path.join(root, 'tsconfig.json') });
  require(source);
} else if (fs.existsSync(built)) {
  require(built);
} else {
  process.stderr.write(`xcopyd: neither ts-node with ${source} nor ${built}: run \`npm ci\` (or \`npm run build\`) in ${root}\n`);
  process.exit(1);
}
