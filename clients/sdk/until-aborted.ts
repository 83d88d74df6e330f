// An AbortSignal for work that cannot itself be cancelled (an acquire whose
// request is already on the wire): the caller stops waiting at once, and the
// result that still arrives is handed to `late` (the SDK hands back a lease
// nobody waits for any more), so nothing leaks.
/** Resolves like `work`, or rejects with signal.reason once it aborts; a result that comes later goes to `late`. */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined, late: (value: T) => void): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const onAbort = (): void => {
      settled = true;
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        if (settled) return late(value);
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
