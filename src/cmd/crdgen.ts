// Writes crds/*.yaml from the zod schemas: `node dist/src/cmd/crdgen.js DIR`.
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { renderCrds } from "../api/crdyaml.js";

const dir = process.argv[2] ?? "crds";
mkdirSync(dir, { recursive: true });
for (const { file, text } of renderCrds()) writeFileSync(join(dir, file), text);
