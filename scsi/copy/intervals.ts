/** Sorted, disjoint half-open intervals of numbers (a ROD token's saved or diverged ROD byte offsets). */
export class Intervals {
  private readonly list: Array<[number, number]> = [];
  total = 0;

  add(start: number, end: number): void {
    if (end <= start) return;
    const out: Array<[number, number]> = [];
    let s = start;
    let e = end;
    let placed = false;
    for (const [a, b] of this.list) {
      if (b < s) out.push([a, b]);
      else if (a > e) {
        if (!placed) {
          out.push([s, e]);
          placed = true;
        }
        out.push([a, b]);
      } else {
        s = Math.min(s, a);
        e = Math.max(e, b);
      }
    }
    if (!placed) out.push([s, e]);
    this.list.length = 0;
    this.list.push(...out);
    this.total = out.reduce((n, [a, b]) => n + b - a, 0);
  }

  /** [start, end) cut into pieces, each wholly inside (true) or outside (false) the set. */
  split(start: number, end: number): Array<[number, number, boolean]> {
    const out: Array<[number, number, boolean]> = [];
    let at = start;
    for (const [a, b] of this.list) {
      if (b <= at) continue;
      if (a >= end) break;
      if (a > at) out.push([at, a, false]);
      const to = Math.min(b, end);
      out.push([Math.max(a, at), to, true]);
      at = to;
      if (at >= end) break;
    }
    if (at < end) out.push([at, end, false]);
    return out;
  }
}
