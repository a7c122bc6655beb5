// Typed errors of the nft layer; each carries nft's own message.

export class NftError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
    readonly exitCode: number | null,
  ) {
    super(message);
    this.name = "NftError";
  }
}

/** The kernel or nft refused a transaction; nothing of it was applied. */
export class NftTransactionError extends NftError {
  override name = "NftTransactionError";
}

/** The table (or an object in it) does not exist; as a transaction error, nothing was applied. */
export class NftNotFoundError extends NftTransactionError {
  override name = "NftNotFoundError";
}

/** nft printed JSON that does not parse (nft 1.0.6 does so for a dormant table's flags). */
export class NftUnreadableError extends NftError {
  override name = "NftUnreadableError";
}

/** nft could not be started (not installed, not permitted, no such network namespace). */
export class NftUnavailableError extends NftError {
  override name = "NftUnavailableError";
}

/** First meaningful line of nft's stderr, for one-line error messages. */
export function firstLine(stderr: string): string {
  const line = stderr.split("\n").find((l) => l.trim() !== "");
  return (line ?? "").trim();
}
