// A tiny authoritative DNS server over UDP on 127.0.0.1 for tests. It answers A and AAAA
// queries (class IN) from a mutable in-memory zone, NXDOMAIN for names not in the zone, and
// NOERROR with an empty answer section when the name exists but has no records of the type.
// It counts queries per (lower-cased) name so tests can assert when names are re-resolved.
import { createSocket, type RemoteInfo } from "node:dgram";
import { isIPv4, isIPv6 } from "node:net";

export interface ZoneRecord {
  a?: string[];
  aaaa?: string[];
  ttl: number;
  /** Record types answered with SERVFAIL instead (to fail one family only). */
  servfail?: ("a" | "aaaa")[];
}

/** How the server treats queries: answer them, ignore them (the client times out), or SERVFAIL. */
export type DnsServerMode = "answer" | "drop" | "servfail";

export interface DnsServer {
  port: number;
  /** Keys are lower-case names without a trailing dot. */
  zone: Map<string, ZoneRecord>;
  /** Queries received per lower-case name (counted in every mode). */
  queries: Map<string, number>;
  mode: DnsServerMode;
  close(): Promise<void>;
}

const TYPE_A = 1;
const TYPE_AAAA = 28;
const TYPE_OPT = 41;
const CLASS_IN = 1;
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const HEADER = 12;

interface Question {
  name: string; // lower case, no trailing dot
  qtype: number;
  qclass: number;
  raw: Buffer; // the question section exactly as received (case preserved)
}

interface Query {
  id: number;
  flags: number;
  question: Question;
  udpSize: number; // the largest response the client accepts
}

class FormatError extends Error {}

/** Reads an uncompressed name (queries never use compression) starting at off. */
function readName(msg: Buffer, off: number): { name: string; end: number } {
  const labels: string[] = [];
  let total = 0;
  for (;;) {
    const len = msg[off];
    if (len === undefined) throw new FormatError("name runs past the end");
    if (len === 0) return { name: labels.join("."), end: off + 1 };
    if (len & 0xc0) throw new FormatError("compressed or extended label in a question");
    if (off + 1 + len > msg.length) throw new FormatError("label runs past the end");
    total += len + 1;
    if (total > 255) throw new FormatError("name longer than 255 octets");
    labels.push(msg.toString("latin1", off + 1, off + 1 + len).toLowerCase());
    off += 1 + len;
  }
}

function parseQuery(msg: Buffer): Query {
  if (msg.length < HEADER) throw new FormatError("short header");
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  const qdcount = msg.readUInt16BE(4);
  const ancount = msg.readUInt16BE(6);
  const nscount = msg.readUInt16BE(8);
  const arcount = msg.readUInt16BE(10);
  if (flags & 0x8000) throw new FormatError("not a query");
  if (qdcount !== 1) throw new FormatError(`expected one question, got ${qdcount}`);
  const { name, end } = readName(msg, HEADER);
  if (end + 4 > msg.length) throw new FormatError("question truncated");
  const qtype = msg.readUInt16BE(end);
  const qclass = msg.readUInt16BE(end + 2);
  const question: Question = { name, qtype, qclass, raw: Buffer.from(msg.subarray(HEADER, end + 4)) };
  // An EDNS OPT record (root name, type 41) in the additional section raises the UDP limit.
  let udpSize = 512;
  const off = end + 4;
  if (ancount === 0 && nscount === 0 && arcount > 0 && off + 11 <= msg.length && msg[off] === 0 && msg.readUInt16BE(off + 1) === TYPE_OPT) {
    udpSize = Math.max(512, msg.readUInt16BE(off + 3));
  }
  return { id, flags, question, udpSize };
}

function ipv4Bytes(addr: string): Buffer {
  if (!isIPv4(addr)) throw new Error(`zone: not an IPv4 address: ${addr}`);
  return Buffer.from(addr.split(".").map(Number));
}

function ipv6Bytes(addr: string): Buffer {
  if (!isIPv6(addr)) throw new Error(`zone: not an IPv6 address: ${addr}`);
  // An embedded IPv4 tail (::ffff:192.0.2.1) becomes its two 16-bit groups.
  let text = addr;
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(addr);
  if (dotted?.[1] && dotted[2]) {
    const b = ipv4Bytes(dotted[2]);
    text = `${dotted[1]}${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const groups = (s: string) => (s === "" ? [] : s.split(":").map((g) => parseInt(g, 16)));
  const [head = "", rest] = text.split("::");
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const words = rest === undefined ? [...left, ...right] : [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  if (words.length !== 8) throw new Error(`zone: cannot encode ${addr}`);
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

function header(id: number, queryFlags: number, rcode: number, aa: boolean, tc: boolean, ancount: number): Buffer {
  const h = Buffer.alloc(HEADER);
  h.writeUInt16BE(id, 0);
  // QR=1; opcode and RD copied from the query; AA for authoritative data; RA=0 (no recursion).
  const flags = 0x8000 | (queryFlags & 0x7800) | (aa ? 0x0400 : 0) | (tc ? 0x0200 : 0) | (queryFlags & 0x0100) | (rcode & 0xf);
  h.writeUInt16BE(flags, 2);
  h.writeUInt16BE(1, 4); // the question is echoed
  h.writeUInt16BE(ancount, 6);
  return h;
}

function answer(qtype: number, ttl: number, rdata: Buffer): Buffer {
  const rr = Buffer.alloc(12 + rdata.length);
  rr.writeUInt16BE(0xc000 | HEADER, 0); // pointer to the question's name
  rr.writeUInt16BE(qtype, 2);
  rr.writeUInt16BE(CLASS_IN, 4);
  rr.writeUInt32BE(ttl >>> 0, 6);
  rr.writeUInt16BE(rdata.length, 10);
  rdata.copy(rr, 12);
  return rr;
}

function respond(q: Query, zone: Map<string, ZoneRecord>, mode: DnsServerMode): Buffer {
  const { question } = q;
  const reply = (rcode: number, aa: boolean, answers: Buffer[] = []): Buffer => {
    let rrs = answers;
    let tc = false;
    const size = () => HEADER + question.raw.length + rrs.reduce((n, b) => n + b.length, 0);
    if (size() > q.udpSize) {
      // Too big for UDP: send what fits and set TC so the client knows the answer is partial.
      tc = true;
      while (rrs.length && size() > q.udpSize) rrs = rrs.slice(0, -1);
    }
    return Buffer.concat([header(q.id, q.flags, rcode, aa, tc, rrs.length), question.raw, ...rrs]);
  };
  if (mode === "servfail") return reply(RCODE.SERVFAIL, false);
  if (((q.flags >> 11) & 0xf) !== 0) return reply(RCODE.NOTIMP, false);
  if (question.qclass !== CLASS_IN) return reply(RCODE.REFUSED, false);
  const rec = zone.get(question.name);
  if (!rec) return reply(RCODE.NXDOMAIN, true);
  const type = question.qtype === TYPE_A ? "a" : question.qtype === TYPE_AAAA ? "aaaa" : null;
  if (type && rec.servfail?.includes(type)) return reply(RCODE.SERVFAIL, false);
  const addrs = question.qtype === TYPE_A ? (rec.a ?? []) : question.qtype === TYPE_AAAA ? (rec.aaaa ?? []) : [];
  const encode = question.qtype === TYPE_A ? ipv4Bytes : ipv6Bytes;
  return reply(RCODE.NOERROR, true, addrs.map((a) => answer(question.qtype, rec.ttl, encode(a))));
}

/** Replies FORMERR with just the header when the query cannot be parsed but has an ID. */
function formErr(msg: Buffer): Buffer | null {
  if (msg.length < HEADER) return null;
  const h = Buffer.alloc(HEADER);
  h.writeUInt16BE(msg.readUInt16BE(0), 0);
  h.writeUInt16BE(0x8000 | (msg.readUInt16BE(2) & 0x7900) | RCODE.FORMERR, 2);
  return h;
}

export function startDnsServer(): Promise<DnsServer> {
  const sock = createSocket("udp4");
  const server: DnsServer = {
    port: 0,
    zone: new Map(),
    queries: new Map(),
    mode: "answer",
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
  sock.on("message", (msg: Buffer, rinfo: RemoteInfo) => {
    let out: Buffer | null;
    try {
      const q = parseQuery(msg);
      server.queries.set(q.question.name, (server.queries.get(q.question.name) ?? 0) + 1);
      if (server.mode === "drop") return;
      out = respond(q, server.zone, server.mode);
    } catch (e) {
      if (!(e instanceof FormatError)) throw e;
      if ((msg.length >= 4 && msg.readUInt16BE(2) & 0x8000) || server.mode === "drop") return; // never answer a response
      out = formErr(msg);
    }
    if (out) sock.send(out, rinfo.port, rinfo.address);
  });
  return new Promise((resolve, reject) => {
    sock.once("error", reject);
    sock.bind(0, "127.0.0.1", () => {
      sock.off("error", reject);
      server.port = sock.address().port;
      resolve(server);
    });
  });
}
