// Test listener for the "world" namespace: accepts TCP on the given ports (IPv4 and IPv6),
// and answers UDP datagrams on the given addresses with "ok". Runs until killed.
import { createServer } from "node:net";
import { createSocket } from "node:dgram";

const arg = (name: string) => (process.argv.find((a) => a.startsWith(`--${name}=`)) ?? "").split("=")[1] ?? "";
const ports = (s: string) => s.split(",").filter(Boolean).map(Number);

for (const port of ports(arg("tcp"))) {
  createServer((sock) => {
    // Greets and keeps the connection open until the client closes it (long-lived flows);
    // answers each "ping" line with "pong", so a client can tell that its flow still passes.
    sock.on("error", () => undefined);
    sock.on("data", (b: Buffer) => {
      for (const _ of b.toString().matchAll(/ping\n/g)) sock.write("pong\n");
    });
    sock.on("end", () => sock.end());
    sock.write("ok\n");
  }).listen({ port, host: "::", ipv6Only: false });
}
// UDP sockets are bound per address, so replies come from the address that was asked
// (a connected client socket drops datagrams from any other source).
for (const port of ports(arg("udp"))) {
  for (const address of arg("addrs").split(",").filter(Boolean)) {
    const s = createSocket({ type: address.includes(":") ? "udp6" : "udp4" });
    s.on("message", (_msg, rinfo) => s.send("ok\n", rinfo.port, rinfo.address));
    s.bind(port, address);
  }
}
process.stdout.write("listening\n");
