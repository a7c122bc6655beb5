// Applies one script file through the real executor, as `apply` does: for the fault tests,
// which kill this process while nft is reading the transaction.
//   node nft-writer.js NETNS SCRIPT-FILE
import { readFileSync } from "node:fs";
import { RealNftExecutor } from "../../src/nft/executor.js";

const [netns, file] = process.argv.slice(2);
if (!netns || !file) throw new Error("usage: nft-writer.js NETNS SCRIPT-FILE");
await new RealNftExecutor({ netns }).apply(readFileSync(file, "utf8"));
process.stdout.write("applied\n");
