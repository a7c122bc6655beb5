// Small traffic tools the benchmarks run inside their network namespaces:
//   server HOST PORT                  accepts TCP connections and discards them (connect target)
//   connect HOST PORT SECONDS PAR     PAR loops of connect + reset for SECONDS; prints one JSON
//                                     line {connects, errors, seconds}
//   probe                             reads "allowed|denied ADDR PORT TIMEOUT_MS" lines on stdin;
//                                     sends one UDP datagram from a fresh socket (a new flow)
//                                     every millisecond until the kernel's verdict is the one
//                                     asked for (sent = allowed; EPERM = an output drop), then
//                                     prints {t (epoch ms, high resolution), attempts, ok}
import { createServer, connect } from "node:net";
import { createSocket } from "node:dgram";
import { createInterface } from "node:readline";

const [mode, ...args] = process.argv.slice(2);

const now = () => performance.timeOrigin + performance.now();

function server(host: string, port: number): void {
  createServer((s) => {
    s.on("error", () => undefined);
    s.resume();
  })
    .listen({ host, port, backlog: 4096 }, () => process.stdout.write("listening\n"))
    .on("error", (e) => {
      process.stderr.write(`server: ${e.message}\n`);
      process.exit(1);
    });
}

function connectLoop(host: string, port: number, seconds: number, parallel: number): void {
  const started = now();
  const end = started + seconds * 1000;
  let connects = 0;
  let errors = 0;
  let running = parallel;
  const one = (): void => {
    if (now() >= end) {
      if (--running === 0) process.stdout.write(`${JSON.stringify({ connects, errors, seconds: (now() - started) / 1000 })}\n`);
      return;
    }
    const s = connect({ host, port });
    s.once("connect", () => {
      connects++;
      s.removeAllListeners("error");
      s.on("error", () => undefined);
      // RST instead of FIN: no TIME_WAIT, so ports never run out however many connects.
      s.resetAndDestroy();
      setImmediate(one);
    });
    s.once("error", () => {
      errors++;
      s.destroy();
      setTimeout(one, 1);
    });
  };
  for (let i = 0; i < parallel; i++) one();
}

function sendOnce(addr: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = createSocket("udp4");
    s.on("error", () => undefined);
    s.send(Buffer.from("probe"), port, addr, (err) => {
      s.close();
      resolve(err ? ((err as NodeJS.ErrnoException).code ?? "error") : "sent");
    });
  });
}

function probe(): void {
  const rl = createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  rl.on("line", (line) => {
    queue = queue.then(async () => {
      const [want, addr, portText, timeoutText] = line.trim().split(/\s+/);
      if (!want || !addr) return;
      const port = Number(portText);
      const deadline = now() + Number(timeoutText ?? 10000);
      let attempts = 0;
      let last = "";
      for (;;) {
        attempts++;
        last = await sendOnce(addr, port);
        const t = now();
        if ((want === "allowed" && last === "sent") || (want === "denied" && last === "EPERM")) {
          process.stdout.write(`${JSON.stringify({ t, attempts, ok: true })}\n`);
          return;
        }
        if (last !== "sent" && last !== "EPERM") {
          process.stdout.write(`${JSON.stringify({ t, attempts, ok: false, error: last })}\n`);
          return;
        }
        if (t > deadline) {
          process.stdout.write(`${JSON.stringify({ t, attempts, ok: false, error: `still ${last}` })}\n`);
          return;
        }
        await new Promise((r) => setTimeout(r, 1));
      }
    });
  });
  process.stdout.write("ready\n");
}

switch (mode) {
  case "server":
    server(args[0] ?? "0.0.0.0", Number(args[1]));
    break;
  case "connect":
    connectLoop(args[0] ?? "", Number(args[1]), Number(args[2]), Number(args[3] ?? 1));
    break;
  case "probe":
    probe();
    break;
  default:
    process.stderr.write("usage: flowtool server HOST PORT | connect HOST PORT SECONDS PARALLEL | probe\n");
    process.exit(2);
}
