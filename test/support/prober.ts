// Probes one TCP destination without pause, to prove a deny is never open during an event
// (a rolling update, a pod deletion): a new connection every --interval-ms, each given up
// after --timeout-ms. Prints "probing" when started and, on SIGTERM, one JSON line:
// {attempts, connected, outcomes: {connected, refused, timeout, ...}, firstConnectedAt}.
//   node prober.js --addr=198.51.100.40 --port=443 [--interval-ms=20] [--timeout-ms=300]
import { connect } from "node:net";

const arg = (name: string, dflt: string): string => (process.argv.find((a) => a.startsWith(`--${name}=`)) ?? `=${dflt}`).split("=")[1] ?? dflt;
const addr = arg("addr", "");
const port = Number(arg("port", "443"));
const intervalMs = Number(arg("interval-ms", "20"));
const timeoutMs = Number(arg("timeout-ms", "300"));

const outcomes: Record<string, number> = {};
let attempts = 0;
let firstConnectedAt: string | null = null;
let stopping = false;

function once(): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: addr, port, timeout: timeoutMs });
    const done = (r: string) => {
      s.destroy();
      resolve(r);
    };
    s.once("connect", () => done("connected"));
    s.once("timeout", () => done("timeout"));
    s.once("error", (e: NodeJS.ErrnoException) => done(e.code === "ECONNREFUSED" ? "refused" : (e.code ?? "error").toLowerCase()));
  });
}

process.once("SIGTERM", () => (stopping = true));
process.stdout.write("probing\n");
while (!stopping) {
  const r = await once();
  attempts++;
  outcomes[r] = (outcomes[r] ?? 0) + 1;
  if (r === "connected" && !firstConnectedAt) firstConnectedAt = new Date().toISOString();
  await new Promise((res) => setTimeout(res, intervalMs));
}
process.stdout.write(`${JSON.stringify({ attempts, connected: outcomes["connected"] ?? 0, outcomes, firstConnectedAt })}\n`);
