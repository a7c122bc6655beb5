// Set difference of two ascending number lists in one merge pass (no Set of 100k entries).

/** Entries only in a (removed) and only in b (added); both inputs ascending, without repeats. */
export function diffSorted(a: ArrayLike<number>, b: ArrayLike<number>): { removed: number[]; added: number[] } {
  const removed: number[] = [];
  const added: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = i < a.length ? (a[i] as number) : Infinity;
    const y = j < b.length ? (b[j] as number) : Infinity;
    if (x === y) {
      i++;
      j++;
    } else if (x < y) {
      removed.push(x);
      i++;
    } else {
      added.push(y);
      j++;
    }
  }
  return { removed, added };
}
