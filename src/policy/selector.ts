// Label selector matching (metav1.LabelSelector semantics).
import type { LabelSelector } from "../api/common.js";

export function selects(sel: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    const val = labels[e.key];
    switch (e.operator) {
      case "In":
        if (!has || !(e.values ?? []).includes(val ?? "")) return false;
        break;
      case "NotIn":
        if (has && (e.values ?? []).includes(val ?? "")) return false;
        break;
      case "Exists":
        if (!has) return false;
        break;
      case "DoesNotExist":
        if (has) return false;
        break;
    }
  }
  return true;
}
