// The host's configured time servers, for the NTP failsafe: chrony, systemd-timesyncd and
// ntpd/ntpsec configuration. Parsing is pure (text in, names out); reading follows each
// format's includes under a root directory (the chart mounts the host's files read-only
// under /host). Host names are resolved by the caller (FqdnResolver); addresses are used as
// given. No configuration: no time server, and the NTP entry opens nothing.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { parseAddress } from "../net/cidr.js";

/** What one chrony file says: sources, and where more configuration is read. */
export interface ChronyFile {
  servers: string[];
  /** `include PATTERN` (a glob in the last path component). */
  includes: string[];
  /** `confdir DIR...`: *.conf files, one name read once across the dirs (first dir wins). */
  confdirs: string[];
  /** `sourcedir DIR...`: *.sources files holding only server/pool/peer lines. */
  sourcedirs: string[];
}

/** The host of a `server|pool|peer HOST [options]` line: brackets and an interface scope dropped. */
function hostOf(word: string | undefined): string | null {
  if (!word) return null;
  const h = word.replace(/^\[(.*)\]$/, "$1").replace(/%.*$/, "");
  return isTimeServerName(h) ? h : null;
}

const HOSTNAME = /^(?=.{1,253}\.?$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

/** An IP address, or a DNS name that can be resolved. */
export function isTimeServerName(s: string): boolean {
  return parseAddress(s) !== null || HOSTNAME.test(s);
}

/** chrony.conf(5): directives one per line; `!`, `;`, `#`, `%` start a comment line. */
export function parseChrony(text: string): ChronyFile {
  const out: ChronyFile = { servers: [], includes: [], confdirs: [], sourcedirs: [] };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/[#;!%].*$/, "").trim();
    if (!line) continue;
    const [directive, ...args] = line.split(/\s+/);
    switch (directive?.toLowerCase()) {
      case "server":
      case "pool":
      case "peer": {
        const h = hostOf(args[0]);
        if (h) out.servers.push(h);
        break;
      }
      case "include":
        if (args[0]) out.includes.push(args[0]);
        break;
      case "confdir":
        out.confdirs.push(...args);
        break;
      case "sourcedir":
        out.sourcedirs.push(...args);
        break;
    }
  }
  return out;
}

/** What one timesyncd.conf(5) file sets in [Time]; undefined: not set in this file. */
export interface TimesyncdFile {
  ntp?: string[];
  fallback?: string[];
  /** `#FallbackNTP=...`: systemd's shipped file shows the compiled-in default this way. */
  commentedFallback?: string[];
}

export function parseTimesyncd(text: string): TimesyncdFile {
  const out: TimesyncdFile = {};
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const sec = /^\[([^\]]*)\]$/.exec(line);
    if (sec) {
      section = sec[1] ?? "";
      continue;
    }
    if (section !== "Time") continue;
    const commented = /^[#;]\s*FallbackNTP\s*=(.*)$/.exec(line);
    if (commented) {
      out.commentedFallback = words(commented[1]);
      continue;
    }
    const m = /^(NTP|FallbackNTP)\s*=(.*)$/.exec(line);
    if (!m) continue;
    // An assignment replaces the list; an empty one resets it (systemd's list semantics).
    const list = words(m[2]);
    if (m[1] === "NTP") out.ntp = list;
    else out.fallback = list;
  }
  return out;
}

function words(s: string | undefined): string[] {
  return (s ?? "").split(/\s+/).flatMap((w) => {
    const h = hostOf(w);
    return h ? [h] : [];
  });
}

/** ntp.conf(5) (ntpd and ntpsec): `server|pool|peer [-4|-6] HOST [options]`, `includefile FILE`. */
export function parseNtpConf(text: string): { servers: string[]; includes: string[] } {
  const out = { servers: [] as string[], includes: [] as string[] };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    if (!line) continue;
    const [directive, ...args] = line.split(/\s+/);
    const d = directive?.toLowerCase();
    if (d === "server" || d === "pool" || d === "peer") {
      const host = hostOf(args.find((a) => a !== "-4" && a !== "-6"));
      // 127.127.t.u is a reference clock driver, not a network server.
      if (host && !/^127\.127\./.test(host)) out.servers.push(host);
    } else if (d === "includefile" && args[0]) {
      out.includes.push(args[0]);
    }
  }
  return out;
}

export interface TimeConfig {
  /** Names and addresses as configured, de-duplicated, in order. */
  servers: string[];
  /** The files that were read (for logs and --help). */
  files: string[];
}

const MAX_DEPTH = 8;
const MAX_FILES = 256;
const MAX_BYTES = 1 << 20;

/**
 * Reads the time configuration of the host whose root directory is `root` ("/": this host;
 * the chart uses "/host"). Paths inside the files (includes, confdir, sourcedir) are taken
 * under the same root. Missing files are skipped; nothing is an error.
 */
export function readTimeConfig(root = "/"): TimeConfig {
  const files: string[] = [];
  const servers: string[] = [];
  const seen = new Set<string>();
  const at = (p: string) => join(root, p);
  const read = (p: string): string | null => {
    if (seen.has(p) || seen.size >= MAX_FILES) return null;
    seen.add(p);
    try {
      const st = statSync(at(p));
      if (!st.isFile() || st.size > MAX_BYTES) return null;
      const text = readFileSync(at(p), "utf8");
      files.push(p);
      return text;
    } catch {
      return null;
    }
  };
  const list = (dir: string, suffix: string): string[] => {
    try {
      return readdirSync(at(dir))
        .filter((f) => f.endsWith(suffix))
        .sort()
        .map((f) => join(dir, f));
    } catch {
      return [];
    }
  };
  const glob = (pattern: string): string[] => {
    const base = basename(pattern);
    if (!/[*?]/.test(base)) return [pattern];
    const re = new RegExp(`^${base.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`);
    return list(dirname(pattern), "").filter((f) => re.test(basename(f)));
  };

  // chrony: Debian's /etc/chrony/chrony.conf, RHEL's /etc/chrony.conf.
  const chrony = (p: string, depth: number): void => {
    const text = depth <= MAX_DEPTH ? read(p) : null;
    if (text === null) return;
    const f = parseChrony(text);
    servers.push(...f.servers);
    for (const inc of f.includes) for (const g of glob(inc)) chrony(g, depth + 1);
    const byName = new Map<string, string>();
    for (const d of f.confdirs) for (const file of list(d, ".conf")) if (!byName.has(basename(file))) byName.set(basename(file), file);
    for (const name of [...byName.keys()].sort()) chrony(byName.get(name) ?? "", depth + 1);
    for (const d of f.sourcedirs) for (const file of list(d, ".sources")) chrony(file, depth + 1);
  };
  chrony("/etc/chrony/chrony.conf", 0);
  chrony("/etc/chrony.conf", 0);

  // systemd-timesyncd: the main file, then drop-ins by name (/etc overrides /run and /usr/lib).
  const timesyncd: TimesyncdFile[] = [];
  const main = read("/etc/systemd/timesyncd.conf");
  if (main !== null) timesyncd.push(parseTimesyncd(main));
  const dropins = new Map<string, string>();
  for (const d of ["/etc/systemd/timesyncd.conf.d", "/run/systemd/timesyncd.conf.d", "/usr/lib/systemd/timesyncd.conf.d"]) {
    for (const file of list(d, ".conf")) if (!dropins.has(basename(file))) dropins.set(basename(file), file);
  }
  for (const name of [...dropins.keys()].sort()) {
    const text = read(dropins.get(name) ?? "");
    if (text !== null) timesyncd.push(parseTimesyncd(text));
  }
  if (timesyncd.length) servers.push(...timesyncdServers(timesyncd));

  // ntpd and ntpsec.
  const ntp = (p: string, depth: number): void => {
    const text = depth <= MAX_DEPTH ? read(p) : null;
    if (text === null) return;
    const f = parseNtpConf(text);
    servers.push(...f.servers);
    for (const inc of f.includes) ntp(inc, depth + 1);
  };
  ntp("/etc/ntp.conf", 0);
  ntp("/etc/ntpsec/ntp.conf", 0);

  return { servers: [...new Set(servers)], files };
}

/**
 * The servers timesyncd may use, from its files in order: NTP= and FallbackNTP= as finally
 * set (it uses NTP=, then servers from the network configuration, then FallbackNTP=), and
 * when no file sets FallbackNTP=, the compiled-in default that the shipped file shows as a
 * `#FallbackNTP=` comment.
 */
export function timesyncdServers(files: readonly TimesyncdFile[]): string[] {
  let ntp: string[] = [];
  let fallback: string[] | undefined;
  let commented: string[] = [];
  for (const f of files) {
    if (f.ntp !== undefined) ntp = f.ntp;
    if (f.fallback !== undefined) fallback = f.fallback;
    if (f.commentedFallback !== undefined && !commented.length) commented = f.commentedFallback;
  }
  return [...new Set([...ntp, ...(fallback ?? commented)])];
}

/**
 * The addresses the guard opens for time servers: literal addresses as given, names through
 * the resolver's answers. A `pool` name answers with a different few of its servers each
 * time while the daemon keeps the ones it picked, so every address a name resolved to stays
 * open for `retainMs` after it was last seen (at most `perName` of them, the newest).
 */
export class TimeServerAddresses {
  private readonly seen = new Map<string, Map<string, number>>();

  constructor(
    private readonly retainMs = 24 * 3600_000,
    private readonly perName = 64,
    private readonly now: () => number = Date.now,
  ) {}

  resolve(servers: readonly string[], answers: ReadonlyMap<string, readonly string[]>): { addresses: string[]; unresolved: string[] } {
    const now = this.now();
    const addresses: string[] = [];
    const unresolved: string[] = [];
    for (const s of servers) {
      const literal = parseAddress(s);
      if (literal) {
        addresses.push(s);
        continue;
      }
      const name = s.toLowerCase().replace(/\.$/, "");
      const mem = this.seen.get(name) ?? new Map<string, number>();
      for (const a of answers.get(s) ?? answers.get(name) ?? []) {
        mem.delete(a);
        mem.set(a, now);
      }
      for (const [a, at] of mem) if (now - at > this.retainMs) mem.delete(a);
      while (mem.size > this.perName) mem.delete(mem.keys().next().value as string);
      if (mem.size) this.seen.set(name, mem);
      else this.seen.delete(name);
      if (mem.size) addresses.push(...mem.keys());
      else unresolved.push(s);
    }
    return { addresses: [...new Set(addresses)], unresolved };
  }
}

/** The names among the servers (what the resolver must look up). */
export function timeServerNames(servers: readonly string[]): string[] {
  return servers.filter((s) => parseAddress(s) === null);
}
