// Serves /metrics, /healthz and /readyz.
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

/** A verdict, or one with its own body (the controller says why, and whether it leads). */
export type HealthAnswer = boolean | { ok: boolean; body: string };

export interface Health {
  live(): HealthAnswer;
  ready(): HealthAnswer;
}

export function parseAddress(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  const host = i > 0 ? addr.slice(0, i).replace(/^\[|\]$/g, "") : "0.0.0.0";
  const port = Number(i >= 0 ? addr.slice(i + 1) : addr);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid listen address "${addr}" (want HOST:PORT)`);
  return { host, port };
}

export async function serveMetrics(addr: string, registry: Registry, health: Health): Promise<Server> {
  const { host, port } = parseAddress(addr);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(text);
        })
        .catch((e: unknown) => {
          res.writeHead(500);
          res.end(String(e));
        });
      return;
    }
    if (path === "/healthz" || path === "/readyz") {
      const answer = path === "/healthz" ? health.live() : health.ready();
      const ok = typeof answer === "boolean" ? answer : answer.ok;
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" });
      res.end(typeof answer === "boolean" ? (ok ? "ok\n" : "not ready\n") : answer.body);
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
