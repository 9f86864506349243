/**
 * The file at LogicalUnit's persistPath: what must survive a restart
 * (persistent reservations with APTPL=1, SPC-5 5.14.6; mode pages saved with
 * MODE SELECT SP=1). Read once at start, validated with a schema (a bad file
 * is an error naming the file and the key, never half-restored state);
 * written atomically: a temporary file, synced, renamed over the old one, and
 * the directory synced so the rename itself survives a power cut.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { PersistedReservations } from './reservations';
import { writeFileDurably } from './durable-file';

/** Changeable mode parameters. A LU reset keeps the current values; MODE SELECT changes them. */
export interface ModeState {
  /** Caching page 08h, WCE. */
  writeCacheEnabled: boolean;
  /** Control page 0Ah, D_SENSE: descriptor-format sense data (SPC-5 7.5.10). */
  descriptorSense: boolean;
}

export interface PersistedLu {
  version: 1;
  reservations?: PersistedReservations;
  savedMode?: ModeState;
}

const registrationSchema = z.object({
  key: z.string().regex(/^[0-9a-f]{1,16}$/i, 'a reservation key in hex (at most 16 digits)'),
  initiatorPortName: z.string().min(1),
  relativeTargetPort: z.number().int().min(0).max(0xffff),
  allTgPt: z.boolean(),
});

const reservationsSchema = z
  .object({
    generation: z.number().int().min(0).max(0xffffffff),
    aptpl: z.boolean(),
    registrations: z.array(registrationSchema),
    reservation: z.object({ type: z.number().int().min(0).max(15), holder: z.number().int().min(0).optional() }).optional(),
  })
  .superRefine((r, ctx) => {
    const holder = r.reservation?.holder;
    if (holder !== undefined && holder >= r.registrations.length) {
      ctx.addIssue({ code: 'custom', path: ['reservation', 'holder'], message: `no registration ${holder}` });
    }
  });

const persistedLuSchema = z.object({
  version: z.literal(1),
  reservations: reservationsSchema.optional(),
  savedMode: z.object({ writeCacheEnabled: z.boolean(), descriptorSense: z.boolean() }).optional(),
});

/** Read and validate the file; undefined when there is none yet. */
export function loadPersistedLu(path: string): PersistedLu | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not JSON (${(err as Error).message})`);
  }
  const r = persistedLuSchema.safeParse(doc);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`);
    throw new Error(`${path} is invalid:\n  ${issues.join('\n  ')}`);
  }
  return r.data;
}

/** Replace the file with `state` (scsi/durable-file.ts: tmp file, fsync, rename, fsync of the directory). */
export async function writePersistedLu(path: string, state: PersistedLu): Promise<void> {
  await writeFileDurably(path, JSON.stringify(state, null, 2));
}
