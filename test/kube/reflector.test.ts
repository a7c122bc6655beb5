// The reflector's paged list against a real kube-apiserver: a list is read in pages (limit +
// continue), the pages make one store that is swapped in whole, a failing page keeps the old
// state and the list is retried from the first page, and the watch continues from the paged
// list's resourceVersion.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { parser } from "../../src/api/parse.js";
import { NodeInfo } from "../../src/api/kube.js";
import { KubeClient } from "../../src/kube/client.js";
import { Reflector, nodeSource, type Source } from "../../src/kube/reflector.js";
import { eventually } from "../support/agent.js";
import { startCluster, type Cluster } from "./support/cluster.js";

// The harness's API server has no nodes of its own: these are all of them.
const node = (i: number) => `apiVersion: v1\nkind: Node\nmetadata: {name: page-${i}}\n`;

/** The nodes source, counting its page requests; `failPage` makes that page number fail once. */
function counted(inner: Source, failPage?: number): { source: Source; pages: (string | undefined)[] } {
  const pages: (string | undefined)[] = [];
  let failed = false;
  return {
    pages,
    source: {
      ...inner,
      async list(page) {
        pages.push(page.continue);
        if (failPage !== undefined && !failed && pages.length === failPage) {
          failed = true;
          throw new Error("injected failure of one page");
        }
        return inner.list(page);
      },
    },
  };
}

describe("reflector: paged lists", () => {
  let cluster: Cluster;
  let client: KubeClient;
  const log = pino({ level: "silent" });

  before(async () => {
    cluster = await startCluster();
    const r = await cluster.kubectl(["apply", "-f", "-"], Array.from({ length: 7 }, (_, i) => node(i)).join("---\n"));
    assert.equal(r.code, 0, r.stderr);
    client = KubeClient.load(cluster.kubeconfig);
  });
  after(async () => {
    await cluster?.stop();
  });

  it("reads every page into one store, then follows the watch from the list", async () => {
    const { source, pages } = counted(nodeSource(client));
    const r = new Reflector(client, source, parser(NodeInfo), log, { pageSize: 2 });
    const sizes: number[] = [];
    r.onChange(() => sizes.push(r.items().length));
    r.start();
    try {
      await eventually("synced", async () => r.hasSynced, (v) => v, 20_000);
      assert.equal(r.items().length, 7);
      assert.equal(pages.length, 4, "7 objects in pages of 2: four requests");
      assert.equal(pages[0], undefined, "the first page has no token");
      assert.ok(pages.slice(1).every((t) => typeof t === "string" && t.length > 0), "later pages carry the continue token");
      assert.deepEqual(sizes, [7], "consumers are told once, with the whole list");
      assert.equal((await cluster.kubectl(["apply", "-f", "-"], node(7))).code, 0);
      await eventually("watched", async () => r.items().length, (n) => n === 8, 20_000);
      assert.ok(r.get("page-7"));
    } finally {
      await r.stop();
    }
  });

  it("keeps the old state when a page fails, and lists again from the first page", async () => {
    const { source, pages } = counted(nodeSource(client), 3);
    const r = new Reflector(client, source, parser(NodeInfo), log, { pageSize: 3 });
    const sizes: number[] = [];
    r.onChange(() => sizes.push(r.items().length));
    r.start();
    try {
      await eventually("synced", async () => r.hasSynced, (v) => v, 20_000);
      assert.equal(r.items().length, 8);
      // 8 objects in pages of 3: the third request fails, then three pages from the start.
      assert.equal(pages.length, 6);
      assert.equal(pages[3], undefined, "the retry starts again without a token");
      assert.equal(r.relists, 1, "one completed list");
      assert.deepEqual(sizes, [8], "no partial store was ever published");
    } finally {
      await r.stop();
    }
  });
});
