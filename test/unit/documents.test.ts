// Reading policy files: only regular files (or symlinks to them), never blocking on a FIFO,
// never reading a device, and refusing an oversize file before reading it.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, ftruncateSync, openSync, symlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { InputError, MAX_FILE_BYTES, NotRegularFileError, loadDocuments, readPolicyFile } from "../../src/source/documents.js";
import { tempDir } from "../support/files.js";

const policy = (name: string) => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: ${name}}
spec:
  rules: [{name: r, action: Allow, to: {cidrs: ["192.0.2.0/24"]}}]
`;

describe("policy file reader", () => {
  it("skips FIFOs, devices and symlinks to them in a directory, one line each, and reads the rest", () => {
    const d = tempDir();
    try {
      d.write("good.yaml", policy("good"));
      execFileSync("mkfifo", [join(d.dir, "fifo.yaml")]);
      symlinkSync("/dev/zero", join(d.dir, "zero.yaml"));
      symlinkSync(join(d.dir, "fifo.yaml"), join(d.dir, "to-fifo.yaml"));
      const lines: string[] = [];
      const started = performance.now();
      const docs = loadDocuments(d.dir, (l) => lines.push(l));
      assert.ok(performance.now() - started < 1000, "nothing blocked");
      assert.deepEqual(docs.policies.map((p) => p.metadata.name), ["good"]);
      assert.equal(lines.length, 3);
      assert.match(lines[0] ?? "", /fifo\.yaml: a FIFO, not a regular file; .*: skipped$/);
      assert.match(lines[1] ?? "", /to-fifo\.yaml: a FIFO, not a regular file/);
      assert.match(lines[2] ?? "", /zero\.yaml: a character device, not a regular file/);
    } finally {
      d.remove();
    }
  });

  it("reads a symlink to a regular file (ConfigMap mounts are symlinks)", () => {
    const d = tempDir();
    try {
      const target = d.write("real.txt", policy("linked"));
      symlinkSync(target, join(d.dir, "linked.yaml"));
      assert.deepEqual(loadDocuments(d.dir).policies.map((p) => p.metadata.name), ["linked"]);
    } finally {
      d.remove();
    }
  });

  it("refuses a path given as a file that is not a regular file, with one line", () => {
    assert.throws(() => readPolicyFile("/dev/zero"), (e: unknown) => e instanceof NotRegularFileError && /^\/dev\/zero: a character device, not a regular file/.test(e.message));
    assert.throws(() => loadDocuments("/dev/zero"), NotRegularFileError, "-f FILE: refused, not skipped");
    assert.throws(() => readPolicyFile("/nonexistent/x.yaml"), /no such file or directory/);
  });

  it("refuses a file over the limit before reading it, and reads one at the limit", () => {
    const d = tempDir();
    try {
      const file = join(d.dir, "big.yaml");
      const fd = openSync(file, "w");
      writeSync(fd, policy("big"));
      ftruncateSync(fd, MAX_FILE_BYTES + 1);
      closeSync(fd);
      assert.throws(() => readPolicyFile(file), (e: unknown) => e instanceof InputError && !(e instanceof NotRegularFileError) && /over the 4 MiB limit/.test(e.message));
      const fd2 = openSync(file, "r+");
      ftruncateSync(fd2, MAX_FILE_BYTES);
      closeSync(fd2);
      assert.equal(readPolicyFile(file).length, MAX_FILE_BYTES);
    } finally {
      d.remove();
    }
  });
});
