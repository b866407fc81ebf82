/** Output helpers for the CLI: sizes, tables, dates, and escaping of untrusted text. */

/**
 * Escapes control characters (ANSI sequences, newlines) in text that may come from image
 * content or a registry, so it cannot repaint the user's terminal or forge output lines.
 */
export function sanitize(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\t') return '\\t';
    if (c === '\r') return '\\r';
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
}

export function formatBytes(n: number): string {
  return scaled(n, 1000, ['B', 'kB', 'MB', 'GB', 'TB']);
}

/** Sizes given in binary units (volumes, memory) are shown in binary units. */
export function formatBinaryBytes(n: number): string {
  return scaled(n, 1024, ['B', 'KiB', 'MiB', 'GiB', 'TiB']);
}

function scaled(n: number, base: number, units: string[]): string {
  let i = 0;
  let v = n;
  while (v >= base && i < units.length - 1) {
    v /= base;
    i++;
  }
  if (i === 0) return `${v} B`;
  return `${Number.isInteger(v) ? v : v.toFixed(v >= 100 ? 0 : 1)} ${units[i]}`;
}

/** `sha256:0123456789ab…` → `0123456789ab`, the way docker shows IDs. */
export function shortDigest(digest: string): string {
  return digest.slice(digest.indexOf(':') + 1, digest.indexOf(':') + 13);
}

export function formatAge(date: Date, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - date.getTime()) / 1000));
  if (s < 60) return `${s} second${s === 1 ? "" : "s"} ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? '' : 's'} ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} hour${h === 1 ? '' : 's'} ago`;
  return `${Math.round(h / 24)} days ago`;
}

/** Left-aligned columns separated by three spaces, like docker's tables. */
export function table(header: string[], unsafeRows: string[][]): string {
  const rows = unsafeRows.map((r) => r.map(sanitize));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('   ');
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
