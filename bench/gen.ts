// Writes the compared inputs to a directory, for looking at them or timing them by hand:
//   node dist/bench/gen.js --out=DIR [--size=100000] [--seed=7]
// DIR/ours/ (EgressPolicy + EgressAddressSet chunks), DIR/raw.nft, DIR/naive.nft.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { destinations, naiveScript, num, options, policyFiles, rawScript, writeFiles } from "./lib.js";

const o = options();
const out = o.raw.get("out");
if (!out) throw new Error("--out=DIR is required");
const dests = destinations(num(o, "size", 100_000, 1000), num(o, "seed", 7, 7));
writeFiles(join(out, "ours"), policyFiles("bench", dests));
writeFileSync(join(out, "raw.nft"), rawScript(dests));
writeFileSync(join(out, "naive.nft"), naiveScript(dests));
process.stdout.write(`${out}: ${dests.length} destinations\n`);
