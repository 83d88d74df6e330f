// Sizes and durations as people write them, read the same way by the
// configuration file, the CLI and anything else that takes them.

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, KiB, MiB, GiB, TiB };

/** Bytes from a plain number or a string with an optional IEC suffix ("4096", "64KiB", "1.5GiB"). */
export function parseSize(text: string | number): number {
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text < 0) throw new RangeError(`size ${text} is not a whole number of bytes >= 0`);
    return text;
  }
  if (typeof text !== 'string') throw new TypeError(`size must be a number or a string, not ${typeof text}`);
  const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  if (!m) throw new RangeError(`invalid size ${JSON.stringify(text)}: expected bytes or a number with KiB, MiB, GiB or TiB`);
  const unit = m[2]!;
  const mult = SIZE_UNITS[unit];
  if (mult === undefined) {
    throw new RangeError(
      `invalid size unit ${JSON.stringify(unit)} in ${JSON.stringify(text)}: use B, KiB, MiB, GiB or TiB (powers of 1024)`,
    );
  }
  const value = Number(m[1]) * mult;
  if (!Number.isSafeInteger(value)) throw new RangeError(`size ${JSON.stringify(text)} is not a whole number of bytes`);
  return value;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds from a plain number (ms) or a string such as "250ms", "90s", "5m", "1h30m", "2d". */
export function parseDuration(text: string | number): number {
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text < 0) throw new RangeError(`duration ${text} is not a whole number of milliseconds >= 0`);
    return text;
  }
  if (typeof text !== 'string') throw new TypeError(`duration must be a number or a string, not ${typeof text}`);
  const s = text.trim();
  if (/^\d+$/.test(s)) return parseDuration(Number(s));
  if (!/^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/.test(s)) {
    throw new RangeError(`invalid duration ${JSON.stringify(text)}: expected milliseconds or e.g. 250ms, 90s, 5m, 1h, 2d`);
  }
  let total = 0;
  for (const part of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) total += Number(part[1]) * DURATION_UNITS[part[2]!]!;
  total = Math.round(total);
  if (!Number.isSafeInteger(total)) throw new RangeError(`duration ${JSON.stringify(text)} is too large`);
  return total;
}
