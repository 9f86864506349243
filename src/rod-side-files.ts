/**
 * Side files of point-in-time ROD tokens: sparse files in <dataDir>/rod/, on
 * the same filesystem as the LU files (by default) so FICLONERANGE and
 * copy_file_range work between them. Tokens do not survive a restart, so the
 * directory is emptied at start.
 */
import fs from 'node:fs';
import path from 'node:path';
import { FileStore } from './backing/file-store';
import type { SideFileFactory } from '../scsi/copy/token-store';

export function rodSideFileDir(dataDir: string): string {
  return path.join(dataDir, 'rod');
}

/** Empty (or make) the side-file directory and return the factory that fills it. */
export function fileSideFiles(dir: string): SideFileFactory {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return async ({ name, bytes, blockSize }) => {
    const file = path.join(dir, `${name}.rod`);
    const size = Math.max(blockSize, Math.ceil(bytes / blockSize) * blockSize);
    await fs.promises.rm(file, { force: true });
    const store = await FileStore.open({ path: file, sizeBytes: size, blockSize });
    return {
      store,
      async remove() {
        await store.close().catch(() => undefined);
        await fs.promises.rm(file, { force: true });
      },
    };
  };
}
