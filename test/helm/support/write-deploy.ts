// `make manifests`: regenerates deploy/ from the chart (test/helm/chart.test.ts fails when
// deploy/ and the chart disagree).
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEPLOY, renderDeploy } from "./tools.js";

const files = await renderDeploy();
mkdirSync(DEPLOY, { recursive: true });
for (const f of readdirSync(DEPLOY)) if (!files.has(f)) rmSync(join(DEPLOY, f));
for (const [name, text] of files) writeFileSync(join(DEPLOY, name), text);
console.log(`wrote ${[...files.keys()].map((f) => `deploy/${f}`).join(", ")}`);
