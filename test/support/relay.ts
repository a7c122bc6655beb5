// A TCP relay between network namespaces through a Unix socket (Unix socket paths are not
// namespaced): `relay.js --listen tcp:ADDR:PORT --to unix:PATH` run inside one namespace, and
// relayUnixToTcp() in the test process, put a service of the host (the test's kube-apiserver)
// behind an address of a test world namespace, so a node namespace reaches it over its veth,
// through its nftables output hook.
import { connect, createServer, type Server, type Socket } from "node:net";
import { rmSync } from "node:fs";

function target(spec: string): () => Socket {
  if (spec.startsWith("unix:")) return () => connect(spec.slice(5));
  const m = /^tcp:(.+):(\d+)$/.exec(spec);
  if (!m) throw new Error(`bad target ${spec}`);
  return () => connect(Number(m[2]), m[1]);
}

function pipe(a: Socket, b: Socket): void {
  a.on("error", () => b.destroy());
  b.on("error", () => a.destroy());
  a.pipe(b);
  b.pipe(a);
}

/** Listens on a Unix socket and relays each connection to host:port. */
export function relayUnixToTcp(path: string, host: string, port: number): Promise<Server> {
  rmSync(path, { force: true });
  const server = createServer((s) => pipe(s, connect(port, host)));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve(server));
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const listen = args[args.indexOf("--listen") + 1] ?? "";
  const to = target(args[args.indexOf("--to") + 1] ?? "");
  const m = /^tcp:(.+):(\d+)$/.exec(listen);
  if (!m) throw new Error(`bad --listen ${listen}`);
  const server = createServer((s) => pipe(s, to()));
  server.listen(Number(m[2]), m[1], () => process.stdout.write("listening\n"));
}
