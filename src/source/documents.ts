// Reads policy files (a file or a directory of *.yaml/*.yml/*.json) into validated objects.
// Every problem is one line naming the file, the object and the field. Only regular files are
// read (a symlink to one is fine: ConfigMap mounts are symlinks), opened without blocking and
// size-checked on the opened descriptor before a byte is read: a FIFO, device or socket (or a
// symlink to one) would block the reader or never end.
import { closeSync, constants, fstatSync, openSync, readSync, readdirSync, statSync, type Stats } from "node:fs";
import { join, extname } from "node:path";
import yaml from "js-yaml";
import { z } from "zod";
import { EgressPolicy } from "../api/policy.js";
import { EgressAddressSet, parseAddressSet } from "../api/addressset.js";

export const MAX_FILE_BYTES = 4 * 1024 * 1024;

export interface Origin {
  file: string;
  index: number;
}

export interface Documents {
  policies: EgressPolicy[];
  addressSets: EgressAddressSet[];
  origins: Map<string, Origin>;
}

export class InputError extends Error {
  override name = "InputError";
}

/** A path that is not a regular file (FIFO, device, socket, directory): never read. */
export class NotRegularFileError extends InputError {
  override name = "NotRegularFileError";
}

function fileKind(st: Stats): string {
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  if (st.isDirectory()) return "a directory";
  return "not a regular file";
}

function notRegular(file: string, st: Stats): NotRegularFileError {
  return new NotRegularFileError(`${file}: ${fileKind(st)}, not a regular file; only regular files (or symlinks to them) are read`);
}

function tooLarge(file: string, bytes: number, atLeast = false): InputError {
  return new InputError(`${file}: file is ${atLeast ? "over " : ""}${(bytes / 1048576).toFixed(1)} MiB, over the ${MAX_FILE_BYTES / 1048576} MiB limit; split large address lists into several EgressAddressSet objects`);
}

/**
 * The text of one policy file, read only if it is a regular file of at most MAX_FILE_BYTES:
 * checked by stat before opening (opening a device can have effects), opened non-blocking (a
 * FIFO swapped in meanwhile does not block), checked again on the opened descriptor, and read
 * at most one byte past the limit (a file that grows while read is refused too).
 */
export function readPolicyFile(file: string): string {
  let st: Stats;
  try {
    st = statSync(file);
  } catch {
    throw new InputError(`${file}: no such file or directory`);
  }
  if (!st.isFile()) throw notRegular(file, st);
  if (st.size > MAX_FILE_BYTES) throw tooLarge(file, st.size);
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    throw new InputError(`${file}: cannot open: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  try {
    const fst = fstatSync(fd);
    if (!fst.isFile()) throw notRegular(file, fst);
    if (fst.size > MAX_FILE_BYTES) throw tooLarge(file, fst.size);
    // One byte past the size: a file that grew since fstat is seen growing.
    let buf = Buffer.allocUnsafe(Math.min(fst.size, MAX_FILE_BYTES) + 1);
    let got = 0;
    for (;;) {
      if (got === buf.length) {
        if (got > MAX_FILE_BYTES) throw tooLarge(file, got, true);
        const bigger = Buffer.allocUnsafe(Math.min(buf.length * 2, MAX_FILE_BYTES + 1));
        buf.copy(bigger, 0, 0, got);
        buf = bigger;
      }
      const n = readSync(fd, buf, got, buf.length - got, null);
      if (n === 0) return buf.toString("utf8", 0, got);
      got += n;
    }
  } finally {
    closeSync(fd);
  }
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out === "" ? String(p) : `.${String(p)}`;
  return out;
}

/** User text in an error line: bounded, one line, printable. */
function printable(s: string): string {
  const t = s.replace(/[^\x20-\x7e]/g, "?");
  return t.length > 80 ? `${t.slice(0, 80)}...` : t;
}

function describe(doc: unknown): string {
  if (doc && typeof doc === "object") {
    const o = doc as { kind?: unknown; metadata?: { name?: unknown } };
    const kind = typeof o.kind === "string" ? o.kind : "object";
    const name = typeof o.metadata?.name === "string" ? o.metadata.name : "(no name)";
    return `${printable(kind)}/${printable(name)}`;
  }
  return "document";
}

/** Two objects of one kind with one metadata.name: one would silently shadow the other. */
function duplicateLine(key: string, first: Origin, second: Origin): string {
  return `${second.file}: document ${second.index + 1}: ${key}: metadata.name: duplicate name, also defined in ${first.file}: document ${first.index + 1}`;
}

export function issueLine(where: string, err: z.ZodError): string {
  const first = err.issues[0];
  if (!first) return `${where}: invalid`;
  const more = err.issues.length > 1 ? ` (and ${err.issues.length - 1} more)` : "";
  const field = formatPath(first.path);
  let msg = first.message;
  if (first.code === "unrecognized_keys") msg = `unknown field(s) ${first.keys.map((k) => `"${k}"`).join(", ")}`;
  return `${where}: ${field || "(document)"}: ${msg}${more}`;
}

export function listFiles(path: string): string[] {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new InputError(`${path}: no such file or directory`);
  }
  if (!st.isDirectory()) return [path];
  return readdirSync(path)
    .filter((f) => [".yaml", ".yml", ".json"].includes(extname(f)) && !f.startsWith("."))
    .sort()
    .map((f) => join(path, f));
}

/** Parses one file; throws InputError with one line on the first problem (NotRegularFileError
 *  for a path that is not a regular file). */
export function parseFile(file: string): { policies: EgressPolicy[]; addressSets: EgressAddressSet[]; origins: Map<string, Origin> } {
  const text = readPolicyFile(file);
  let docs: unknown[];
  try {
    docs = yaml.loadAll(text, undefined, { schema: yaml.CORE_SCHEMA, filename: file });
  } catch (e) {
    const m = e instanceof yaml.YAMLException ? `${e.reason} at line ${(e.mark?.line ?? 0) + 1}, column ${(e.mark?.column ?? 0) + 1}` : String(e);
    throw new InputError(`${file}: YAML syntax error: ${m}`);
  }
  docs = docs.filter((d) => d !== null && d !== undefined);
  if (docs.length === 0) throw new InputError(`${file}: contains no objects (empty file)`);
  const out = { policies: [] as EgressPolicy[], addressSets: [] as EgressAddressSet[], origins: new Map<string, Origin>() };
  docs.forEach((doc, index) => {
    const where = `${file}: document ${index + 1}: ${describe(doc)}`;
    if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new InputError(`${where}: (document): expected an object with apiVersion, kind, metadata and spec`);
    const kind = (doc as { kind?: unknown }).kind;
    if (kind === "EgressPolicy") {
      const r = EgressPolicy.safeParse(doc);
      if (!r.success) throw new InputError(issueLine(where, r.error));
      const key = `EgressPolicy/${r.data.metadata.name}`;
      const prev = out.origins.get(key);
      if (prev) throw new InputError(duplicateLine(key, prev, { file, index }));
      out.policies.push(r.data);
      out.origins.set(key, { file, index });
    } else if (kind === "EgressAddressSet") {
      const r = parseAddressSet(doc);
      if (!r.success) throw new InputError(issueLine(where, r.error));
      // Chunks of one set share its label, each with its own metadata.name.
      const key = `EgressAddressSet/${r.data.metadata.name}`;
      const prev = out.origins.get(key);
      if (prev) throw new InputError(duplicateLine(key, prev, { file, index }));
      out.addressSets.push(r.data);
      out.origins.set(key, { file, index });
    } else {
      throw new InputError(`${where}: kind: expected EgressPolicy or EgressAddressSet, got ${JSON.stringify(kind)?.slice(0, 40) ?? "nothing"}`);
    }
  });
  return out;
}

/** Checks that names are unique across all files. */
export function merge(parts: readonly ReturnType<typeof parseFile>[]): Documents {
  const docs: Documents = { policies: [], addressSets: [], origins: new Map() };
  for (const p of parts) {
    for (const [key, origin] of p.origins) {
      const prev = docs.origins.get(key);
      if (prev) throw new InputError(duplicateLine(key, prev, origin));
      docs.origins.set(key, origin);
    }
    docs.policies.push(...p.policies);
    docs.addressSets.push(...p.addressSets);
  }
  return docs;
}

/**
 * Reads a file or a directory. A directory entry that is not a regular file is skipped and
 * reported through `skipped` (one line each); a path given as a file must be a regular file.
 */
export function loadDocuments(path: string, skipped: (line: string) => void = () => undefined): Documents {
  const files = listFiles(path);
  const single = files.length === 1 && files[0] === path;
  return merge(
    files.flatMap((f) => {
      try {
        return [parseFile(f)];
      } catch (e) {
        if (single || !(e instanceof NotRegularFileError)) throw e;
        skipped(`${e.message}: skipped`);
        return [];
      }
    }),
  );
}
