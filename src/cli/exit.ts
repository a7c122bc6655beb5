// The CLI's dispatch and exit contract, shared by `nftegress` and `kubectl nftegress`: a usage
// error is one line (then the help) and exit 2; any other error is one line and exit 1.
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

export type Out = (line: string) => void;
export type Command = (argv: string[], out: Out, err: Out) => Promise<number>;

const out: Out = (l) => process.stdout.write(`${l}\n`);
const err: Out = (l) => process.stderr.write(`${l}\n`);

/** Runs the command named by the first argument (loaded on use), or prints the help: without a
 *  command exit 2, with help/--help/-h exit 0; an unknown command is a usage error. */
export function dispatch(program: string, help: string, commands: Readonly<Record<string, () => Promise<Command>>>, argv: string[]): void {
  const main = async (): Promise<number> => {
    const [cmd, ...rest] = argv;
    if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
      out(help);
      return cmd === undefined ? 2 : 0;
    }
    const load = commands[cmd];
    if (!load) {
      err(`${program}: unknown command "${cmd.slice(0, 80)}"\n\n${help}`);
      return 2;
    }
    return (await load())(rest, out, err);
  };
  finish(program, main(), err);
}
