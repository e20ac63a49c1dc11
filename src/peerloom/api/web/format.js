// Human-readable numbers for the UI.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** Bytes as "1.5 MiB". */
export function bytes(n) {
  let value = Number(n) || 0;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${UNITS[unit]}`;
}

/** A rate in bytes per second as "1.5 MiB/s". */
export function rate(n) {
  return `${bytes(n)}/s`;
}

/** A 0..1 fraction as a percent with one decimal, rounded down so "100.0" means complete. */
export function percent(fraction) {
  return (Math.floor((Number(fraction) || 0) * 1000 + 1e-6) / 10).toFixed(1);
}

/** Seconds left as "1h 02m", "3m 05s" or "42s"; "∞" when unknown. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '∞';
  const s = Math.max(0, Math.round(seconds));
  const pad = (n) => String(n).padStart(2, '0');
  if (s >= 86400) return `${Math.floor(s / 86400)}d ${pad(Math.floor((s % 86400) / 3600))}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  return `${s}s`;
}
