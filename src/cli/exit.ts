// The CLI's exit contract, shared by `nftegress` and `kubectl nftegress`: a usage error is one
// line (then the help) and exit 2; any other error is one line and exit 1.
import { ZodError } from "zod";
import { UsageError } from "./args.js";
import { NftError } from "../nft/errors.js";
import { InputError } from "../source/documents.js";

export function finish(program: string, run: Promise<number>, err: (line: string) => void): void {
  run.then(
    (code) => (process.exitCode = code),
    (e: unknown) => {
      if (e instanceof UsageError) {
        err(`${program}: ${e.message}`);
        process.exitCode = 2;
        return;
      }
      const msg = e instanceof InputError || e instanceof NftError ? e.message : e instanceof ZodError ? e.issues[0]?.message ?? "invalid input" : e instanceof Error ? e.message : String(e);
      err(`${program}: ${msg.split("\n")[0]}`);
      process.exitCode = 1;
    },
  );
}
