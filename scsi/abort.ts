/**
 * The one error a task or a copy is aborted with. Aborts reach the core from
 * task management, resets, a lost connection or COPY OPERATION ABORT; code
 * that stops on a signal throws its reason when that is an Error (the
 * transport's own, with its cause), else an AbortError, and every catch
 * recognizes an abort by isAbortError.
 */
export class AbortError extends Error {
  constructor(message = 'aborted') {
    super(message);
    this.name = 'AbortError';
  }
}

/** Was `err` an abort (ours, or a DOM/Node AbortError)? */
export function isAbortError(err: unknown): boolean {
  return (err as Error | undefined)?.name === 'AbortError';
}

/** What to throw when `signal` fired: its reason if it is an Error, else an AbortError. */
export function abortReason(signal: AbortSignal, message = 'aborted'): Error {
  const r: unknown = signal.reason;
  return r instanceof Error ? r : new AbortError(message);
}
