// Benchmark 2: time to enforce a 100k-CIDR policy from the CLI (`nftegress apply`, a fresh
// process: module loading, YAML, validation, compile, nft) into an empty network namespace,
// against `nft -f` of the equivalent hand-written single-interval-set script. Interleaved, the
// namespace emptied before each run, medians. Also the parts of ours, to show where time goes.
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { CLI, NODE, destinations, log, median, num, options, pairedRatio, policyFiles, rawScript, report, round, stateDirArgs, tempDir, timed, writeFiles, netns, nftSync } from "./lib.js";
import { must } from "../test/support/exec.js";

const o = options();
const size = num(o, "size", 100_000, 1000);
const reps = num(o, "reps", 5, 2);

const dir = tempDir("apply");
const dests = destinations(size);
writeFiles(join(dir, "ours"), policyFiles("bench", dests));
writeFileSync(join(dir, "raw.nft"), rawScript(dests));
const ns = netns("apply");
// The script `apply` loads into an empty namespace (render prints exactly that plan).
writeFileSync(join(dir, "ours.nft"), must(NODE, [CLI, "render", "-f", join(dir, "ours"), "--failsafe", "/dev/null"]));

const state = stateDirArgs(dir, "apply");
const inNs = (argv: string[]) => ["nsenter", `--net=/run/netns/${ns}`, "--", ...argv];
const empty = () => nftSync(ns, "flush ruleset\n");

log(`apply: ${size} destinations, ${reps} repetitions`);
const ours: number[] = [];
const raw: number[] = [];
const oursNft: number[] = [];
const startup: number[] = [];
for (let r = 0; r < reps; r++) {
  const steps: [string, () => Promise<void>][] = [
    ["ours", async () => void ours.push(await timed([NODE, CLI, "apply", "-f", join(dir, "ours"), "--netns", ns, "--failsafe", "/dev/null", ...state]))],
    ["raw", async () => void raw.push(await timed(inNs(["nft", "-f", join(dir, "raw.nft")])))],
    ["ours-script", async () => void oursNft.push(await timed(inNs(["nft", "-f", join(dir, "ours.nft")])))],
  ];
  if (r % 2) steps.reverse();
  for (const [, step] of steps) {
    empty();
    await step();
  }
  startup.push(await timed([NODE, CLI, "apply", "--help"]));
  log(`rep ${r + 1}/${reps}: nftegress apply ${ours[r]?.toFixed(0)} ms, raw nft -f ${raw[r]?.toFixed(0)} ms, nft -f of our script ${oursNft[r]?.toFixed(0)} ms, cli start ${startup[r]?.toFixed(0)} ms`);
}
empty();

report(
  o,
  "apply",
  {
    apply_ratio: round(pairedRatio(ours, raw)),
    apply_ours_ms: round(median(ours), 1),
    apply_raw_ms: round(median(raw), 1),
    ours_script_nft_ms: round(median(oursNft), 1),
    ours_script_vs_raw_ratio: round(pairedRatio(oursNft, raw)),
    cli_startup_ms: round(median(startup), 1),
  },
  { destinations: size, repetitions: reps, samples: { apply_ours_ms: ours, apply_raw_ms: raw, ours_script_nft_ms: oursNft, cli_startup_ms: startup } },
);
process.exit(0);
