import type { z } from "zod";

/** A parse function for watch payloads: the object, or one line saying why it is invalid. */
export function parser<T>(schema: { safeParse(raw: unknown): z.ZodSafeParseResult<T> }): (raw: unknown) => T | { error: string } {
  return (raw) => {
    const r = schema.safeParse(raw);
    if (r.success) return r.data;
    const i = r.error.issues[0];
    return { error: `${i?.path.join(".") ?? ""}: ${i?.message ?? "invalid"}` };
  };
}
